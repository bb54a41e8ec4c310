package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestUploadMultipartKeepsFullPaths(t *testing.T) {
	_, srv := testAgent(t)
	dir := t.TempDir()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for i, name := range []string{"a/one.txt", "b/c/two.txt"} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="file"; filename="`+filepath.Join(dir, name)+`"`)
		w, _ := mw.CreatePart(h)
		w.Write([]byte{byte('0' + i)})
	}
	mw.Close()
	resp, err := http.Post(srv.URL+"/files?username=root", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []writeInfo
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 || len(out) != 2 || out[1].Path != filepath.Join(dir, "b/c/two.txt") || out[1].Type != "file" {
		t.Fatalf("status %d out %+v", resp.StatusCode, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "b/c/two.txt")); string(b) != "1" {
		t.Fatalf("content %q", b)
	}
}

func TestUploadGzipOctetStreamAndDownload(t *testing.T) {
	_, srv := testAgent(t)
	p := filepath.Join(t.TempDir(), "x", "data.bin")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("abc"), 1000))
	zw.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/files?username=root&path="+url.QueryEscape(p), &gz)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("X-Metadata-Owner", "tests")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("upload: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	resp, _ = http.Get(srv.URL + "/files?username=root&path=" + url.QueryEscape(p))
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 3000 {
		t.Fatalf("download %d, %d bytes", resp.StatusCode, len(b))
	}
	for path, want := range map[string]int{p + ".missing": 404, filepath.Dir(p): 400} {
		resp, _ = http.Get(srv.URL + "/files?username=root&path=" + url.QueryEscape(path))
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, _ = http.Get(srv.URL + "/files?username=nobody-xyz&path=/etc/hostname")
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("unknown user: %d, want 401", resp.StatusCode)
	}
}

func TestAccessTokenEnforcedAfterInit(t *testing.T) {
	_, srv := testAgent(t)
	b, _ := json.Marshal(map[string]interface{}{"accessToken": "s3cret", "envVars": map[string]string{"A": "1"}})
	resp, _ := http.Post(srv.URL+"/init", "application/json", bytes.NewReader(b))
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("init %d", resp.StatusCode)
	}
	resp, _ = http.Get(srv.URL + "/envs")
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/envs", nil)
	req.Header.Set("X-Access-Token", "s3cret")
	resp, _ = http.DefaultClient.Do(req)
	var envs map[string]string
	json.NewDecoder(resp.Body).Decode(&envs)
	resp.Body.Close()
	if envs["A"] != "1" {
		t.Fatalf("envs %v", envs)
	}
	resp, _ = http.Get(srv.URL + "/health")
	if resp.StatusCode != 204 {
		t.Fatalf("health %d", resp.StatusCode)
	}
}

func TestFilesystemRPCs(t *testing.T) {
	_, srv := testAgent(t)
	dir := t.TempDir()
	var e entryResponseJSON
	if st := postJSON(t, srv.URL+"/filesystem.Filesystem/MakeDir", map[string]string{"path": dir + "/a/b"}, &e); st != 200 || e.Entry.Type != "FILE_TYPE_DIRECTORY" {
		t.Fatalf("mkdir %d %+v", st, e)
	}
	var re rpcError
	if st := postJSON(t, srv.URL+"/filesystem.Filesystem/MakeDir", map[string]string{"path": dir + "/a/b"}, &re); st != 409 || re.Code != "already_exists" {
		t.Fatalf("mkdir again %d %+v", st, re)
	}
	os.WriteFile(dir+"/a/b/f", []byte("hey"), 0o600)
	var list struct{ Entries []entryResponseEntry }
	postJSON(t, srv.URL+"/filesystem.Filesystem/ListDir", map[string]interface{}{"path": dir, "depth": 3}, &list)
	if len(list.Entries) != 3 || list.Entries[2].Path != dir+"/a/b/f" || list.Entries[2].Size != 3 || list.Entries[2].Permissions != "-rw-------" {
		t.Fatalf("list %+v", list)
	}
	if st := postJSON(t, srv.URL+"/filesystem.Filesystem/Move", map[string]string{"source": dir + "/a", "destination": dir + "/z/a2"}, &e); st != 200 || e.Entry.Path != dir+"/z/a2" {
		t.Fatalf("move %d %+v", st, e)
	}
	if st := postJSON(t, srv.URL+"/filesystem.Filesystem/Remove", map[string]string{"path": dir + "/z"}, nil); st != 200 {
		t.Fatalf("remove %d", st)
	}
	if st := postJSON(t, srv.URL+"/filesystem.Filesystem/Stat", map[string]string{"path": dir + "/z"}, &re); st != 404 || re.Code != "not_found" {
		t.Fatalf("stat removed %d %+v", st, re)
	}
}

type entryResponseEntry struct {
	Name, Type, Path, Permissions string
	Size                          int64
}

type entryResponseJSON struct{ Entry entryResponseEntry }

func TestWatcherRecursive(t *testing.T) {
	dir := t.TempDir()
	w, err := newWatcher(dir, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	os.Mkdir(dir+"/sub", 0o755)
	time.Sleep(50 * time.Millisecond) // let the new dir's watch be added
	os.WriteFile(dir+"/sub/f.txt", []byte("x"), 0o644)
	os.Remove(dir + "/sub/f.txt")
	deadline := time.Now().Add(3 * time.Second)
	seen := map[string]bool{}
	for time.Now().Before(deadline) && !seen["sub/f.txt EVENT_TYPE_REMOVE"] {
		for _, ev := range w.drain() {
			seen[ev.Name+" "+ev.Type] = true
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"sub EVENT_TYPE_CREATE", "sub/f.txt EVENT_TYPE_CREATE", "sub/f.txt EVENT_TYPE_WRITE", "sub/f.txt EVENT_TYPE_REMOVE"} {
		if !seen[want] {
			t.Errorf("missing %q in %v", want, seen)
		}
	}
}

func TestEndpointCloseAndReopen(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "agent.sock")
	e := &endpoint{spec: "unix:" + sock, handler: newAgent().handler()}
	health := func() int {
		c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
		resp, err := c.Get("http://agent/health")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for round := 0; round < 2; round++ {
		if err := e.open(); err != nil {
			t.Fatal(err)
		}
		if got := health(); got != 204 {
			t.Fatalf("round %d: health %d", round, got)
		}
		e.close()
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Fatalf("socket file still there after close: %v", err)
		}
		if got := health(); got != 0 {
			t.Fatalf("health answered while closed: %d", got)
		}
	}
}

func TestDownloadCompressesOnlyWhenGzipAloneIsAsked(t *testing.T) {
	_, srv := testAgent(t)
	p := filepath.Join(t.TempDir(), "text.txt")
	data := bytes.Repeat([]byte("corral "), 2000)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for accept, wantGzip := range map[string]bool{
		"gzip": true, "GZip;q=1": true, "gzip, deflate": false, "gzip, deflate, br, zstd": false,
		"": false, "gzip;q=0": false, "identity": false, "gzip, deflate;q=0": true,
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/files?username=root&path="+url.QueryEscape(p), nil)
		req.Header.Set("Accept-Encoding", accept)
		// A Transport that does not add or undo gzip itself, so the wire encoding is what we see.
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		gotGzip := resp.Header.Get("Content-Encoding") == "gzip"
		if gotGzip != wantGzip {
			t.Errorf("Accept-Encoding %q: gzip=%v, want %v", accept, gotGzip, wantGzip)
			continue
		}
		if gotGzip {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("%q: %v", accept, err)
			}
			body, _ = io.ReadAll(zr)
		}
		if !bytes.Equal(body, data) {
			t.Errorf("Accept-Encoding %q: body differs (%d bytes)", accept, len(body))
		}
	}
}
