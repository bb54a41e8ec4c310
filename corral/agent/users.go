package main

// User lookup straight from the image's /etc/passwd and /etc/group: the agent is
// static (no libc/NSS), and must work in any image, musl or glibc.

import (
	"bufio"
	"encoding/base64"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

type userInfo struct {
	Name   string
	UID    uint32
	GID    uint32
	Home   string
	Shell  string
	Groups []uint32 // supplementary groups, including the primary one
}

// etcRoot lets tests point lookups at a fake /etc.
var etcRoot = "/etc"

// userCache keeps lookups while /etc/passwd and /etc/group are unchanged:
// every command resolves its user, and reading both files costs ~0.4 ms of
// a command's round trip in gVisor; two stats cost a fraction of that.
var userCache = struct {
	sync.Mutex
	m map[string]cachedUser
}{m: map[string]cachedUser{}}

type cachedUser struct {
	u     userInfo
	stamp [2]fileStamp
}

type fileStamp struct {
	ok         bool
	ino, size  uint64
	mtimeNanos int64
	ctimeNanos int64
}

func stampOf(path string) fileStamp {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return fileStamp{}
	}
	return fileStamp{ok: true, ino: st.Ino, size: uint64(st.Size),
		mtimeNanos: st.Mtim.Nano(), ctimeNanos: st.Ctim.Nano()}
}

func lookupUser(name string) (*userInfo, error) {
	stamp := [2]fileStamp{stampOf(etcRoot + "/passwd"), stampOf(etcRoot + "/group")}
	userCache.Lock()
	c, ok := userCache.m[name]
	userCache.Unlock()
	if ok && c.stamp == stamp {
		u := c.u
		u.Groups = append([]uint32(nil), c.u.Groups...)
		return &u, nil
	}
	u, err := readUser(name)
	if err == nil {
		cached := *u
		cached.Groups = append([]uint32(nil), u.Groups...)
		userCache.Lock()
		userCache.m[name] = cachedUser{u: cached, stamp: stamp}
		userCache.Unlock()
	}
	return u, err
}

func readUser(name string) (*userInfo, error) {
	f, err := os.Open(etcRoot + "/passwd")
	if err != nil {
		if name == "root" {
			// An image without /etc/passwd still has root.
			return &userInfo{Name: "root", Home: "/root", Shell: "/bin/sh", Groups: []uint32{0}}, nil
		}
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ":")
		if len(parts) < 7 || parts[0] != name {
			continue
		}
		uid, err1 := strconv.ParseUint(parts[2], 10, 32)
		gid, err2 := strconv.ParseUint(parts[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		u := &userInfo{Name: name, UID: uint32(uid), GID: uint32(gid), Home: parts[5], Shell: parts[6]}
		if u.Home == "" {
			u.Home = "/"
		}
		u.Groups = groupsOf(name, u.GID)
		return u, nil
	}
	if name == "root" {
		return &userInfo{Name: "root", Home: "/root", Shell: "/bin/sh", Groups: []uint32{0}}, nil
	}
	return nil, errf("invalid_argument", "user %q not found in %s/passwd", name, etcRoot)
}

func groupsOf(name string, primary uint32) []uint32 {
	groups := []uint32{primary}
	f, err := os.Open(etcRoot + "/group")
	if err != nil {
		return groups
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ":")
		if len(parts) < 4 {
			continue
		}
		gid, err := strconv.ParseUint(parts[2], 10, 32)
		if err != nil || uint32(gid) == primary {
			continue
		}
		for _, m := range strings.Split(parts[3], ",") {
			if m == name {
				groups = append(groups, uint32(gid))
				break
			}
		}
	}
	return groups
}

// nameOfUID / nameOfGID give owner names for EntryInfo; numeric fallback.
func nameOfUID(uid uint32) string { return idName(etcRoot+"/passwd", uid) }
func nameOfGID(gid uint32) string { return idName(etcRoot+"/group", gid) }

func idName(file string, id uint32) string {
	idCache.Lock()
	defer idCache.Unlock()
	key := file + ":" + strconv.FormatUint(uint64(id), 10)
	if n, ok := idCache.m[key]; ok {
		return n
	}
	name := strconv.FormatUint(uint64(id), 10)
	if f, err := os.Open(file); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			parts := strings.Split(sc.Text(), ":")
			if len(parts) >= 3 && parts[2] == strconv.FormatUint(uint64(id), 10) {
				name = parts[0]
				break
			}
		}
		f.Close()
	}
	idCache.m[key] = name
	return name
}

// requestUserName is the user named by `Authorization: Basic base64("user:")`,
// or "" when the request names none.
func requestUserName(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Basic ") {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len("Basic "):]))
	if err != nil {
		return ""
	}
	name, _, _ := strings.Cut(string(raw), ":")
	return name
}

// resolveUser picks the user for a request: the explicit name if given, else
// the /init default user, else "user" if the image has one, else root.
func (a *agent) resolveUser(explicit string) (*userInfo, error) {
	if explicit == "" {
		a.mu.RLock()
		explicit = a.defaultUser
		a.mu.RUnlock()
	}
	if explicit != "" {
		return lookupUser(explicit)
	}
	if u, err := lookupUser("user"); err == nil {
		return u, nil
	}
	return lookupUser("root")
}

var idCache = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}
