// Go net echo server: a goroutine per connection (run with GOMAXPROCS=1).
package main

import (
	"net"
	"os"
	"os/signal"
	"syscall"
)

func handle(c net.Conn) {
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
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; os.Exit(0) }()
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go handle(c)
	}
}
