package main

// Minimal Connect-RPC (JSON codec) server side: unary calls, server streams and
// client streams, exactly as much as the e2b SDK's connectrpc client needs.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// rpcError is a Connect error: a code name from the Connect spec plus a message.
type rpcError struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

func (e *rpcError) Error() string { return e.Code + ": " + e.Message }

func errf(code, format string, a ...interface{}) *rpcError {
	return &rpcError{Code: code, Message: fmt.Sprintf(format, a...)}
}

// httpStatus maps a Connect code to the HTTP status Connect uses for unary errors.
var httpStatus = map[string]int{
	"canceled":            499,
	"unknown":             500,
	"invalid_argument":    400,
	"deadline_exceeded":   504,
	"not_found":           404,
	"already_exists":      409,
	"permission_denied":   403,
	"resource_exhausted":  429,
	"failed_precondition": 400,
	"aborted":             409,
	"out_of_range":        400,
	"unimplemented":       501,
	"internal":            500,
	"unavailable":         503,
	"data_loss":           500,
	"unauthenticated":     401,
}

func asRPCError(err error) *rpcError {
	var re *rpcError
	if errors.As(err, &re) {
		return re
	}
	return &rpcError{Code: "internal", Message: err.Error()}
}

// maxMessage bounds one request message; requests are small JSON documents.
const maxMessage = 16 << 20

// unary adapts a typed handler to a Connect unary endpoint.
func unary[Req any, Resp any](fn func(r *http.Request, req *Req) (*Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			writeUnaryError(w, errf("unimplemented", "method %s not allowed", r.Method))
			return
		}
		var req Req
		body, err := io.ReadAll(io.LimitReader(r.Body, maxMessage))
		if err != nil {
			writeUnaryError(w, errf("invalid_argument", "read request: %v", err))
			return
		}
		if len(body) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				writeUnaryError(w, errf("invalid_argument", "decode request: %v", err))
				return
			}
		}
		resp, err := fn(r, &req)
		if err != nil {
			writeUnaryError(w, asRPCError(err))
			return
		}
		out, _ := json.Marshal(resp)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
	}
}

func writeUnaryError(w http.ResponseWriter, e *rpcError) {
	status, ok := httpStatus[e.Code]
	if !ok {
		status = 500
	}
	out, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

const (
	flagEndStream  = 0x02
	flagCompressed = 0x01
)

// readEnvelope reads one enveloped message; io.EOF at a clean boundary.
func readEnvelope(r io.Reader) (flags byte, msg []byte, err error) {
	var hdr [5]byte
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = errf("invalid_argument", "truncated envelope")
		}
		return
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxMessage {
		return 0, nil, errf("resource_exhausted", "message of %d bytes too large", n)
	}
	msg = make([]byte, n)
	if _, err = io.ReadFull(r, msg); err != nil {
		return 0, nil, errf("invalid_argument", "truncated envelope: %v", err)
	}
	if hdr[0]&flagCompressed != 0 {
		return 0, nil, errf("unimplemented", "compressed messages are not supported")
	}
	return hdr[0], msg, nil
}

// streamWriter writes enveloped messages of one server-stream response. It is
// safe for concurrent use (event forwarding and keepalive ticks share it).
type streamWriter struct {
	mu    sync.Mutex
	w     http.ResponseWriter
	fl    http.Flusher
	ended bool
}

func newStreamWriter(w http.ResponseWriter) *streamWriter {
	w.Header().Set("Content-Type", "application/connect+json")
	// Proxies (the gateway) must pass frames through immediately.
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	sw := &streamWriter{w: w, fl: fl}
	sw.flush()
	return sw
}

func (s *streamWriter) flush() {
	if s.fl != nil {
		s.fl.Flush()
	}
}

func (s *streamWriter) writeFrame(flags byte, payload []byte) error {
	var hdr [5]byte
	hdr[0] = flags
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	// One Write call per frame keeps the frame in one chunk on the wire.
	buf := make([]byte, 0, 5+len(payload))
	buf = append(append(buf, hdr[:]...), payload...)
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	s.flush()
	return nil
}

// Send writes one message frame.
func (s *streamWriter) Send(msg interface{}) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return errors.New("stream ended")
	}
	return s.writeFrame(0, b)
}

// End writes the end-of-stream frame, with the error if there is one.
func (s *streamWriter) End(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	body := []byte("{}")
	if err != nil {
		body, _ = json.Marshal(map[string]interface{}{"error": asRPCError(err)})
	}
	_ = s.writeFrame(flagEndStream, body)
}

// serverStream adapts a typed handler to a Connect server-streaming endpoint:
// the request is one enveloped message, the handler sends frames via sw and
// its returned error goes into the end-of-stream frame.
func serverStream[Req any](fn func(r *http.Request, req *Req, sw *streamWriter) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var req Req
		_, msg, err := readEnvelope(r.Body)
		if err == nil && len(msg) > 0 {
			if jerr := json.Unmarshal(msg, &req); jerr != nil {
				err = errf("invalid_argument", "decode request: %v", jerr)
			}
		} else if errors.Is(err, io.EOF) {
			err = errf("invalid_argument", "missing request message")
		}
		sw := newStreamWriter(w)
		if err != nil {
			sw.End(err)
			return
		}
		sw.End(fn(r, &req, sw))
	}
}

// keepaliveInterval reads the SDK's Keepalive-Ping-Interval header (seconds);
// zero means no keepalives were asked for.
func keepaliveInterval(r *http.Request) time.Duration {
	v := r.Header.Get("Keepalive-Ping-Interval")
	if v == "" {
		return 0
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n * float64(time.Second))
}

// connectTimeout reads the Connect-Timeout-Ms header; zero means none.
func connectTimeout(r *http.Request) time.Duration {
	v := r.Header.Get("Connect-Timeout-Ms")
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Millisecond
}
