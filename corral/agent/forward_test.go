package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// echoListener accepts on a random loopback port and echoes each connection,
// half-closing its write side when the peer half-closes.
func echoListener(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// freePort is a loopback port nothing listens on (bound, then released).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return port
}

func forwardHandshake(t *testing.T, addr string, port int, extra string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /_corral/forward/%d HTTP/1.1\r\nHost: agent\r\nConnection: Upgrade\r\nUpgrade: corral-tcp\r\n%s\r\n", port, extra)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, br, resp
}

func TestForwardEchoAndHalfClose(t *testing.T) {
	_, srv := testAgent(t)
	port := echoListener(t)
	c, br, resp := forwardHandshake(t, strings.TrimPrefix(srv.URL, "http://"), port, "")
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "corral-tcp" {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	if _, err := io.WriteString(c, "hello "); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "hello " {
		t.Fatalf("echo: %q %v", buf, err)
	}
	// Half-close: what was sent before our EOF still comes back, then EOF.
	_, _ = io.WriteString(c, "world")
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "world" {
		t.Fatalf("after half-close: %q %v", rest, err)
	}
}

func TestForwardPipelinedBytes(t *testing.T) {
	_, srv := testAgent(t)
	port := echoListener(t)
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// Data right behind the handshake, in the same write, must not be lost.
	fmt.Fprintf(c, "GET /_corral/forward/%d HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: corral-tcp\r\n\r\nearly", port)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "early" {
		t.Fatalf("echo: %q %v", buf, err)
	}
}

func TestForwardClosedPort(t *testing.T) {
	_, srv := testAgent(t)
	port := freePort(t)
	_, _, resp := forwardHandshake(t, strings.TrimPrefix(srv.URL, "http://"), port, "")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var body struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Code != 502 || !strings.Contains(body.Message, fmt.Sprintf("port %d", port)) {
		t.Fatalf("body %+v", body)
	}
}

func TestForwardBadRequests(t *testing.T) {
	_, srv := testAgent(t)
	for _, path := range []string{"/_corral/forward/0", "/_corral/forward/70000", "/_corral/forward/x"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	// A valid port but no Upgrade headers.
	resp, err := http.Get(fmt.Sprintf("%s/_corral/forward/%d", srv.URL, echoListener(t)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("no upgrade: %d", resp.StatusCode)
	}
}

func TestForwardNeedsAccessToken(t *testing.T) {
	a, srv := testAgent(t)
	a.accessToken = "tok"
	port := echoListener(t)
	addr := strings.TrimPrefix(srv.URL, "http://")
	if _, _, resp := forwardHandshake(t, addr, port, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without token: %d", resp.StatusCode)
	}
	if _, _, resp := forwardHandshake(t, addr, port, "X-Access-Token: tok\r\n"); resp.StatusCode != 101 {
		t.Fatalf("with token: %d", resp.StatusCode)
	}
}

func TestForwardCloseAll(t *testing.T) {
	a, srv := testAgent(t)
	port := echoListener(t)
	_, br, resp := forwardHandshake(t, strings.TrimPrefix(srv.URL, "http://"), port, "")
	if resp.StatusCode != 101 {
		t.Fatalf("handshake: %d", resp.StatusCode)
	}
	// Quiescing must let go of spliced connections too.
	deadline := time.Now().Add(2 * time.Second)
	for {
		a.fwd.mu.Lock()
		n := len(a.fwd.conns)
		a.fwd.mu.Unlock()
		if n == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.fwd.closeAll()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("connection still open after closeAll")
	}
}
