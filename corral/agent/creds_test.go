package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

var testUser = &userInfo{Name: "user", UID: 1000, GID: 1000, Home: "/home/user", Groups: []uint32{1000}}

// permTree makes base (0755) holding private/ (root, 0700) and open/ (0777),
// under a 0755 directory so that uid 1000 can reach them.
func permTree(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	base, err := os.MkdirTemp("", "corral-creds-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	os.Mkdir(base+"/private", 0o700)
	os.WriteFile(base+"/private/secret", []byte("s"), 0o600)
	os.Mkdir(base+"/open", 0o777)
	os.Chmod(base+"/open", 0o777)
	return base
}

func TestAsUserIsRefusedWhereTheUserIs(t *testing.T) {
	base := permTree(t)
	var denied []error
	err := asUser(testUser, func() error {
		_, err1 := os.Create(base + "/private/x")
		_, err2 := os.ReadDir(base + "/private")
		_, err3 := os.Stat(base + "/private/secret")
		denied = []error{err1, err2, err3}
		f, err := os.Create(base + "/open/mine")
		if err == nil {
			f.Close()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range denied {
		if !errors.Is(e, fs.ErrPermission) {
			t.Errorf("op %d as uid 1000: %v, want permission denied", i, e)
		}
	}
	st, _ := os.Stat(base + "/open/mine")
	if s := st.Sys().(*syscall.Stat_t); s.Uid != 1000 || s.Gid != 1000 {
		t.Errorf("file created as user owned by %d:%d", s.Uid, s.Gid)
	}
	// Root keeps root's powers, on this goroutine and after the switch.
	root := &userInfo{Name: "root", Home: "/root", Groups: []uint32{0}}
	if err := asUser(root, func() error { return os.WriteFile(base+"/private/x", nil, 0o600) }); err != nil {
		t.Fatalf("root refused: %v", err)
	}
}

func TestAsUserGroupsAndNoLeak(t *testing.T) {
	base := permTree(t)
	os.Mkdir(base+"/grp", 0o770)
	os.Chmod(base+"/grp", 0o770)
	os.Chown(base+"/grp", 0, 1234)
	member := &userInfo{Name: "m", UID: 1000, GID: 1000, Groups: []uint32{1000, 1234}}
	if err := asUser(member, func() error { return os.WriteFile(base+"/grp/a", nil, 0o644) }); err != nil {
		t.Fatalf("group member refused: %v", err)
	}
	if err := asUser(testUser, func() error { return os.WriteFile(base+"/grp/b", nil, 0o644) }); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("non-member: %v", err)
	}
	// Many concurrent switches: no root operation ever runs as the user.
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := 0; i < 200; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- asUser(testUser, func() error {
				if _, err := os.Stat(base + "/private/secret"); err == nil {
					return errors.New("user could stat a private file")
				}
				return nil
			})
		}()
		go func() {
			defer wg.Done()
			if _, err := os.Stat(base + "/private/secret"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() != 0 || syscall.Getegid() != 0 {
		t.Fatal("ids leaked")
	}
}

func TestAsUserPanicPropagates(t *testing.T) {
	permTree(t)
	defer func() {
		if recover() != "boom" {
			t.Fatal("panic lost")
		}
	}()
	_ = asUser(testUser, func() error { panic("boom") })
}

// The files API and the filesystem service act as the request's user.
func TestFileAPIsActAsTheUser(t *testing.T) {
	base := permTree(t)
	fakeEtc(t, "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\n", "root:x:0:\nuser:x:1000:\n")
	_, srv := testAgent(t)
	upload := func(path, user string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/files?path="+url.QueryEscape(path)+"&username="+user, bytes.NewReader([]byte("x")))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := upload(base+"/private/u.txt", ""); st != 403 {
		t.Errorf("user upload into a root 0700 dir: %d, want 403", st)
	}
	if st := upload(base+"/private/deep/u.txt", ""); st != 403 {
		t.Errorf("user upload under a root 0700 dir: %d, want 403", st)
	}
	if st := upload(base+"/private/r.txt", "root"); st != 200 {
		t.Errorf("root upload: %d", st)
	}
	if st := upload(base+"/open/d/u.txt", "user"); st != 200 {
		t.Errorf("user upload into an open dir: %d", st)
	}
	for _, p := range []string{base + "/open/d", base + "/open/d/u.txt"} {
		if st, _ := os.Stat(p); st.Sys().(*syscall.Stat_t).Uid != 1000 {
			t.Errorf("%s not owned by the user", p)
		}
	}
	resp, err := http.Get(srv.URL + "/files?path=" + url.QueryEscape(base+"/private/secret"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("user download of a root 0600 file: %d", resp.StatusCode)
	}
	for _, c := range []struct {
		method string
		body   map[string]interface{}
	}{
		{"Stat", map[string]interface{}{"path": base + "/private/secret"}},
		{"ListDir", map[string]interface{}{"path": base + "/private"}},
		{"MakeDir", map[string]interface{}{"path": base + "/private/d"}},
		{"Remove", map[string]interface{}{"path": base + "/private/secret"}},
		{"Move", map[string]interface{}{"source": base + "/open/d", "destination": base + "/private/d"}},
		{"CreateWatcher", map[string]interface{}{"path": base + "/private"}},
	} {
		var re rpcError
		if st := postJSON(t, srv.URL+"/filesystem.Filesystem/"+c.method, c.body, &re); st != 403 || re.Code != "permission_denied" {
			t.Errorf("%s as user: %d %+v", c.method, st, re)
		}
	}
	if _, err := os.Stat(base + "/private/secret"); err != nil {
		t.Fatal("user removed a root file")
	}
	var list struct{ Entries []entryResponseEntry }
	req, _ := http.NewRequest("POST", srv.URL+"/filesystem.Filesystem/ListDir", bytes.NewReader([]byte(`{"path":"`+base+`/private"}`)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Basic cm9vdDo=") // root:
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&list)
	if resp.StatusCode != 200 || len(list.Entries) == 0 {
		t.Fatalf("root ListDir: %d %+v", resp.StatusCode, list)
	}
}

// A user's recursive watcher cannot see into directories the user cannot read.
func TestWatcherActsAsTheUser(t *testing.T) {
	base := permTree(t)
	w, err := newWatcher(base+"/open", true, true, testUser)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	os.Mkdir(base+"/open/hidden", 0o700)
	os.Mkdir(base+"/open/seen", 0o755)
	time.Sleep(100 * time.Millisecond) // let the new dirs' watches be added (or refused)
	os.WriteFile(base+"/open/hidden/f", nil, 0o644)
	os.WriteFile(base+"/open/seen/f", nil, 0o644)
	seen := map[string]bool{}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !seen["seen/f"]; {
		for _, ev := range w.drain() {
			seen[ev.Name] = true
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !seen["seen/f"] || !seen["hidden"] || seen["hidden/f"] {
		t.Fatalf("events %v", seen)
	}
}

// The cost asUser adds to a file call (run as root: go test -bench AsUser).
func BenchmarkAsUserStat(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	for _, c := range []struct {
		name string
		u    *userInfo
	}{{"root", nil}, {"user", testUser}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				_ = asUser(c.u, func() error { _, err := os.Stat("/tmp"); return err })
			}
		})
	}
}
