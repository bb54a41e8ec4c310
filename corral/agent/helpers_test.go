package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// testAgent serves a fresh agent over a real HTTP server.
func testAgent(t *testing.T) (*agent, *httptest.Server) {
	t.Helper()
	a := newAgent()
	srv := httptest.NewServer(a.handler())
	t.Cleanup(srv.Close)
	return a, srv
}

func envelope(t *testing.T, msg interface{}) []byte {
	t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(b)))
	return append(hdr[:], b...)
}

// frame is one decoded server-stream envelope.
type frame struct {
	flags byte
	body  map[string]interface{}
}

func readFrames(t *testing.T, r io.Reader) []frame {
	t.Helper()
	var out []frame
	for {
		flags, msg, err := readEnvelope(r)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read envelope: %v", err)
		}
		var m map[string]interface{}
		if err := json.Unmarshal(msg, &m); err != nil {
			t.Fatalf("frame not JSON: %q", msg)
		}
		out = append(out, frame{flags, m})
	}
}

func postStream(t *testing.T, url string, msg interface{}, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(envelope(t, msg)))
	req.Header.Set("Content-Type", "application/connect+json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func postJSON(t *testing.T, url string, msg interface{}, out interface{}) int {
	t.Helper()
	b, _ := json.Marshal(msg)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("decode: %v", err)
		}
	}
	return resp.StatusCode
}

// fakeEtc points user lookups at a temporary /etc.
func fakeEtc(t *testing.T, passwd, group string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "group"), []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	old := etcRoot
	etcRoot = dir
	idCache.Lock()
	idCache.m = map[string]string{}
	idCache.Unlock()
	t.Cleanup(func() { etcRoot = old })
}
