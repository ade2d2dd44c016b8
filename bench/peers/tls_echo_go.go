// Go crypto/tls echo server: a goroutine per connection (run with
// GOMAXPROCS=1), the peer of cogent's TLS echo.
//
//	tls_echo_go PORT CERT KEY
package main

import (
	"crypto/tls"
	"os"
	"os/signal"
	"syscall"
)

func handle(c *tls.Conn) {
	defer c.Close()
	buf := make([]byte, 16384)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func main() {
	cert, err := tls.LoadX509KeyPair(os.Args[2], os.Args[3])
	if err != nil {
		os.Exit(1)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:"+os.Args[1], &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		os.Exit(0)
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go handle(c.(*tls.Conn))
	}
}
