// Go net/http peer: C goroutines share one http.Client (a Transport
// keeping up to C connections to the host) and fetch N pages between them.
//
//	http_go URL N C [--cafile FILE]
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func cpu() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6 + float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
}

func main() {
	base := os.Args[1]
	total, _ := strconv.Atoi(os.Args[2])
	c, _ := strconv.Atoi(os.Args[3])
	tr := &http.Transport{MaxIdleConns: c, MaxIdleConnsPerHost: c, MaxConnsPerHost: c, DisableCompression: false}
	for i, a := range os.Args {
		if a == "--cafile" && i+1 < len(os.Args) {
			pem, err := os.ReadFile(os.Args[i+1])
			if err != nil {
				panic(err)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		}
	}
	client := &http.Client{Transport: tr}
	var next, done, failed int64
	var wg sync.WaitGroup
	t0, c0 := time.Now(), cpu()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := atomic.AddInt64(&next, 1) - 1
				if i >= int64(total) {
					return
				}
				url := base
				if strings.Contains(base, "%d") {
					url = fmt.Sprintf(base, i)
				}
				r, err := client.Get(url)
				if err != nil {
					atomic.AddInt64(&failed, 1)
					continue
				}
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
				if r.StatusCode == 200 {
					atomic.AddInt64(&done, 1)
				} else {
					atomic.AddInt64(&failed, 1)
				}
			}
		}()
	}
	wg.Wait()
	dt, dc := time.Since(t0).Seconds(), cpu()-c0
	out, _ := json.Marshal(map[string]interface{}{"impl": "go", "pages": done, "failed": failed, "concurrency": c,
		"seconds": dt, "pages_per_s": float64(done) / dt, "cpu_us_per_page": dc * 1e6 / float64(done)})
	fmt.Println(string(out))
}
