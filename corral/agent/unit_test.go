package main

import (
	"bytes"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	rec := httptest.NewRecorder()
	sw := newStreamWriter(rec)
	if err := sw.Send(map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	sw.End(errf("not_found", "gone"))
	sw.End(nil) // second End is a no-op
	if ct := rec.Header().Get("Content-Type"); ct != "application/connect+json" {
		t.Fatalf("content type %q", ct)
	}
	frames := readFrames(t, bytes.NewReader(rec.Body.Bytes()))
	if len(frames) != 2 || frames[0].flags != 0 || frames[0].body["a"].(float64) != 1 {
		t.Fatalf("frames %+v", frames)
	}
	e := frames[1].body["error"].(map[string]interface{})
	if frames[1].flags != flagEndStream || e["code"] != "not_found" || e["message"] != "gone" {
		t.Fatalf("end frame %+v", frames[1])
	}
}

func TestUnaryErrorStatus(t *testing.T) {
	for code, status := range map[string]int{"not_found": 404, "already_exists": 409, "invalid_argument": 400, "permission_denied": 403} {
		rec := httptest.NewRecorder()
		writeUnaryError(rec, errf(code, "x"))
		if rec.Code != status {
			t.Errorf("%s: status %d, want %d", code, rec.Code, status)
		}
	}
}

func TestUserLookup(t *testing.T) {
	fakeEtc(t,
		"root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\nbad:line\n",
		"root:x:0:\nuser:x:1000:\ndocker:x:999:user,other\nsudo:x:27:other\n")
	u, err := lookupUser("user")
	if err != nil {
		t.Fatal(err)
	}
	if u.UID != 1000 || u.GID != 1000 || u.Home != "/home/user" {
		t.Fatalf("user %+v", u)
	}
	if len(u.Groups) != 2 || u.Groups[0] != 1000 || u.Groups[1] != 999 {
		t.Fatalf("groups %v", u.Groups)
	}
	if _, err := lookupUser("nobody-here"); err == nil {
		t.Fatal("unknown user found")
	}
	if nameOfUID(1000) != "user" || nameOfGID(999) != "docker" || nameOfUID(4242) != "4242" {
		t.Fatal("id names")
	}
	a := newAgent()
	if u, _ := a.resolveUser(""); u.Name != "user" {
		t.Fatalf("default user %q, want user", u.Name)
	}
	a.defaultUser = "root"
	if u, _ := a.resolveUser(""); u.Name != "root" {
		t.Fatalf("default user after init %q", u.Name)
	}
}

func TestRequestUserName(t *testing.T) {
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Basic dXNlcjo=") // "user:"
	if got := requestUserName(r); got != "user" {
		t.Fatalf("got %q", got)
	}
	r.Header.Set("Authorization", "Bearer x")
	if got := requestUserName(r); got != "" {
		t.Fatalf("got %q", got)
	}
}

func TestExpandPath(t *testing.T) {
	u := &userInfo{Home: "/home/user"}
	cases := map[string]string{"a/b": "/home/user/a/b", "~": "/home/user", "~/x": "/home/user/x", "/abs/../p": "/p", ".": "/home/user"}
	for in, want := range cases {
		if got := expandPath(in, u); got != want {
			t.Errorf("expandPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLsPermissions(t *testing.T) {
	cases := map[fs.FileMode]string{
		0o644:                              "-rw-r--r--",
		fs.ModeDir | fs.ModeSticky | 0o777: "drwxrwxrwt",
		fs.ModeSetuid | 0o755:              "-rwsr-xr-x",
		fs.ModeSymlink | 0o777:             "lrwxrwxrwx",
	}
	for m, want := range cases {
		if got := lsPermissions(m); got != want {
			t.Errorf("%v: %q, want %q", m, got, want)
		}
	}
}

func TestLookupUserSeesPasswdAndGroupChanges(t *testing.T) {
	fakeEtc(t, "root:x:0:0:root:/root:/bin/bash\nann:x:1001:1001::/home/ann:/bin/bash\n", "ann:x:1001:\n")
	u, err := lookupUser("ann")
	if err != nil || u.Home != "/home/ann" || len(u.Groups) != 1 {
		t.Fatalf("first lookup: %+v %v", u, err)
	}
	u.Groups[0] = 77 // callers' copies never reach the cache
	if again, _ := lookupUser("ann"); again.Groups[0] != 1001 {
		t.Fatalf("cached groups changed through a caller: %v", again.Groups)
	}
	passwd := "root:x:0:0:root:/root:/bin/bash\nann:x:1001:1001::/srv/ann:/bin/sh\n"
	if err := os.WriteFile(filepath.Join(etcRoot, "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etcRoot, "group"), []byte("ann:x:1001:\ndocker:x:999:ann\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err = lookupUser("ann")
	if err != nil || u.Home != "/srv/ann" || len(u.Groups) != 2 {
		t.Fatalf("after the change: %+v %v", u, err)
	}
	if _, err := lookupUser("nobody-here"); err == nil {
		t.Fatal("unknown user found")
	}
}
