package netproxy

import (
	"bufio"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, msg string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	return r.ReadString('\n')
}

// proxyToEcho is a proxy to an echo server, closed when the test ends.
func proxyToEcho(t *testing.T) *Proxy {
	t.Helper()
	p, err := New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// dial connects to p; the connection is closed when the test ends.
func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

func TestForwardsBlackholesAndHeals(t *testing.T) {
	p := proxyToEcho(t)
	c, r := dial(t, p)
	if got, err := roundTrip(c, r, "one", 2*time.Second); err != nil || got != "one\n" {
		t.Fatalf("through the proxy: got %q, %v; want the echo", got, err)
	}
	p.Blackhole()
	if got, err := roundTrip(c, r, "two", 300*time.Millisecond); err == nil {
		t.Fatalf("blackholed: got %q; want a read timeout", got)
	}
	p.Heal()
	c2, r2 := dial(t, p)
	if got, err := roundTrip(c2, r2, "three", 2*time.Second); err != nil || got != "three\n" {
		t.Fatalf("after heal: got %q, %v; want the echo", got, err)
	}
}

func TestDropConnectionsResetsClients(t *testing.T) {
	p := proxyToEcho(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "one", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	p.DropConnections()
	if got, err := roundTrip(c, r, "two", 2*time.Second); err == nil {
		t.Fatalf("after DropConnections: got %q; want the connection closed", got)
	}
}
