package main

// Port forwarding: the host gateway reaches TCP ports inside the sandbox
// (which has no network of its own) through the agent's socket.
//
//   GET /_corral/forward/<port> HTTP/1.1
//   Connection: Upgrade
//   Upgrade: corral-tcp
//
// The agent dials 127.0.0.1:<port> inside the sandbox; on success it answers
// 101 Switching Protocols and from then on the connection carries raw bytes
// both ways until either side closes. Nothing listening: 502 JSON.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	forwardPrefix   = "/_corral/forward/"
	forwardProtocol = "corral-tcp"
	forwardDialWait = 5 * time.Second
)

// forwards tracks spliced connections: a hijacked connection is no longer the
// http.Server's, so quiescing (SIGUSR1) must close these by hand or the host
// socket stays held and runsc cannot checkpoint.
type forwards struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (f *forwards) add(c net.Conn) {
	f.mu.Lock()
	if f.conns == nil {
		f.conns = map[net.Conn]struct{}{}
	}
	f.conns[c] = struct{}{}
	f.mu.Unlock()
}

func (f *forwards) remove(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// closeAll drops every forwarded connection (the in-sandbox side sees EOF).
func (f *forwards) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.conns = nil
}

func writeForwardError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]interface{}{"code": status, "message": msg})
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

func (a *agent) handleForward(w http.ResponseWriter, r *http.Request) {
	port, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, forwardPrefix))
	if err != nil || port < 1 || port > 65535 {
		writeForwardError(w, http.StatusBadRequest, "forward: the path must end in a port 1-65535")
		return
	}
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") ||
		!headerHasToken(r.Header, "Upgrade", forwardProtocol) {
		writeForwardError(w, http.StatusBadRequest,
			"forward: send GET with Connection: Upgrade and Upgrade: "+forwardProtocol)
		return
	}
	// Dial before answering so that a closed port is a plain HTTP error the
	// gateway can relay, not a 101 followed by an immediate close.
	target, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), forwardDialWait)
	if err != nil {
		writeForwardError(w, http.StatusBadGateway,
			fmt.Sprintf("nothing accepts connections on port %d in the sandbox (%v)", port, err))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		_ = target.Close()
		writeForwardError(w, http.StatusInternalServerError, "forward: connection cannot be taken over")
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		_ = target.Close()
		return
	}
	// The server's header deadline would otherwise cut long-lived streams.
	_ = conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+
		forwardProtocol+"\r\n\r\n"); err != nil {
		_ = conn.Close()
		_ = target.Close()
		return
	}
	// Bytes the client pipelined after the handshake already sit in rw's buffer.
	var client io.Reader = conn
	if rw.Reader.Buffered() > 0 {
		client = rw.Reader
	}
	a.fwd.add(conn)
	a.fwd.add(target)
	go func() {
		splice(conn, client, target)
		a.fwd.remove(conn)
		a.fwd.remove(target)
	}()
}

// halfCloser is what *net.TCPConn and *net.UnixConn offer to end one direction.
type halfCloser interface{ CloseWrite() error }

// splice copies both ways; EOF on one side half-closes the other so a peer
// that still has something to say can finish. Both are closed at the end.
func splice(client net.Conn, clientR io.Reader, target net.Conn) {
	var wg sync.WaitGroup
	pipe := func(dst net.Conn, src io.Reader, srcConn net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if hc, ok := dst.(halfCloser); ok && err == nil {
			_ = hc.CloseWrite()
		} else {
			// A reset (or no half-close): nothing more can flow either way.
			_ = dst.Close()
			_ = srcConn.Close()
		}
	}
	wg.Add(2)
	go pipe(target, clientR, client)
	go pipe(client, target, target)
	wg.Wait()
	_ = client.Close()
	_ = target.Close()
}
