package main

// Directory watching with inotify (syscall package only).

import (
	"encoding/binary"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

type fsEvent struct {
	Name  string     `json:"name"`
	Type  string     `json:"type"`
	Entry *entryInfo `json:"entry,omitempty"`
}

const watchMask = syscall.IN_CREATE | syscall.IN_MODIFY | syscall.IN_DELETE | syscall.IN_MOVED_FROM |
	syscall.IN_MOVED_TO | syscall.IN_ATTRIB | syscall.IN_DELETE_SELF

// maxQueued bounds the events a polling watcher keeps between two polls.
const maxQueued = 10000

type watcher struct {
	root         string
	recursive    bool
	includeEntry bool
	user         *userInfo // watches are added and entries read as this user
	file         *os.File  // the inotify fd, pollable so Close unblocks Read

	mu        sync.Mutex
	dirs      map[int32]string // wd -> absolute dir
	queue     []fsEvent
	notify    chan struct{} // poked (non-blocking) when the queue grows
	closed    chan struct{}
	closeOnce sync.Once
}

func newWatcher(root string, recursive, includeEntry bool, u *userInfo) (*watcher, error) {
	var w *watcher
	err := asUser(u, func() (err error) {
		w, err = openWatcher(root, recursive, includeEntry, u)
		return err
	})
	if err != nil {
		return nil, err
	}
	go w.loop()
	return w, nil
}

func openWatcher(root string, recursive, includeEntry bool, u *userInfo) (*watcher, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, fsError(err, root)
	}
	if !st.IsDir() {
		return nil, errf("invalid_argument", "path %q is not a directory", root)
	}
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, errf("internal", "inotify_init: %v", err)
	}
	w := &watcher{
		root: root, recursive: recursive, includeEntry: includeEntry, user: u,
		file:   os.NewFile(uintptr(fd), "inotify"),
		dirs:   map[int32]string{},
		notify: make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
	if err := w.add(root); err != nil {
		w.file.Close()
		return nil, fsError(err, root)
	}
	if recursive {
		w.addTree(root)
	}
	return w, nil
}

func (w *watcher) add(dir string) error {
	rc, err := w.file.SyscallConn()
	if err != nil {
		return err
	}
	var wd int
	var werr error
	if cerr := rc.Control(func(fd uintptr) {
		wd, werr = syscall.InotifyAddWatch(int(fd), dir, watchMask|syscall.IN_ONLYDIR)
	}); cerr != nil {
		return cerr
	}
	if werr != nil {
		return &os.PathError{Op: "inotify_add_watch", Path: dir, Err: werr}
	}
	w.mu.Lock()
	w.dirs[int32(wd)] = dir
	w.mu.Unlock()
	return nil
}

// addTree watches every directory below dir (not following symlinks).
func (w *watcher) addTree(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, de := range ents {
		if de.IsDir() {
			sub := filepath.Join(dir, de.Name())
			if w.add(sub) == nil {
				w.addTree(sub)
			}
		}
	}
}

func (w *watcher) close() {
	w.closeOnce.Do(func() {
		close(w.closed)
		w.file.Close()
	})
}

func (w *watcher) loop() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			w.close()
			return
		}
		_ = asUser(w.user, func() error {
			w.handleAll(buf[:n])
			return nil
		})
	}
}

// handleAll handles a batch of inotify events (as the watcher's user: it
// may add watches and stat entries).
func (w *watcher) handleAll(buf []byte) {
	for off := 0; off+syscall.SizeofInotifyEvent <= len(buf); {
		wd := int32(binary.LittleEndian.Uint32(buf[off:]))
		mask := binary.LittleEndian.Uint32(buf[off+4:])
		nameLen := int(binary.LittleEndian.Uint32(buf[off+12:]))
		nameBytes := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+nameLen]
		off += syscall.SizeofInotifyEvent + nameLen
		name := string(nameBytes)
		for i := 0; i < len(name); i++ {
			if name[i] == 0 {
				name = name[:i]
				break
			}
		}
		w.handle(wd, mask, name)
	}
}

func (w *watcher) handle(wd int32, mask uint32, name string) {
	w.mu.Lock()
	dir, ok := w.dirs[wd]
	if mask&syscall.IN_IGNORED != 0 {
		delete(w.dirs, wd)
	}
	w.mu.Unlock()
	if !ok || mask&syscall.IN_IGNORED != 0 {
		return
	}
	full := dir
	if name != "" {
		full = filepath.Join(dir, name)
	}
	if mask&syscall.IN_DELETE_SELF != 0 && dir != w.root {
		return // reported by the parent's IN_DELETE already
	}
	var typ string
	switch {
	case mask&(syscall.IN_CREATE|syscall.IN_MOVED_TO) != 0:
		typ = "EVENT_TYPE_CREATE"
		if w.recursive && mask&syscall.IN_ISDIR != 0 {
			if w.add(full) == nil {
				w.addTree(full)
			}
		}
	case mask&syscall.IN_MODIFY != 0:
		typ = "EVENT_TYPE_WRITE"
	case mask&(syscall.IN_DELETE|syscall.IN_DELETE_SELF) != 0:
		typ = "EVENT_TYPE_REMOVE"
	case mask&syscall.IN_MOVED_FROM != 0:
		typ = "EVENT_TYPE_RENAME"
	case mask&syscall.IN_ATTRIB != 0:
		typ = "EVENT_TYPE_CHMOD"
	default:
		return
	}
	rel, err := filepath.Rel(w.root, full)
	if err != nil {
		rel = full
	}
	ev := fsEvent{Name: rel, Type: typ}
	if w.includeEntry && typ != "EVENT_TYPE_REMOVE" && typ != "EVENT_TYPE_RENAME" {
		if e, err := statEntry(full); err == nil {
			ev.Entry = e
		}
	}
	w.mu.Lock()
	if len(w.queue) < maxQueued {
		w.queue = append(w.queue, ev)
	}
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *watcher) drain() []fsEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

type watchRequest struct {
	Path               string `json:"path"`
	Recursive          bool   `json:"recursive"`
	IncludeEntry       bool   `json:"includeEntry"`
	AllowNetworkMounts bool   `json:"allowNetworkMounts"`
}

type watchDirResponse struct {
	Start      *struct{} `json:"start,omitempty"`
	Filesystem *fsEvent  `json:"filesystem,omitempty"`
	Keepalive  *struct{} `json:"keepalive,omitempty"`
}

func (a *agent) rpcWatchDir(r *http.Request, req *watchRequest, sw *streamWriter) error {
	path, u, err := a.rpcPath(r, req.Path)
	if err != nil {
		return err
	}
	w, err := newWatcher(path, req.Recursive, req.IncludeEntry, u)
	if err != nil {
		return err
	}
	defer w.close()
	if err := sw.Send(watchDirResponse{Start: &struct{}{}}); err != nil {
		return err
	}
	var tick <-chan time.Time
	if iv := keepaliveInterval(r); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		tick = t.C
	}
	var expire <-chan time.Time
	if d := connectTimeout(r); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		expire = t.C
	}
	for {
		select {
		case <-w.notify:
			for _, ev := range w.drain() {
				ev := ev
				if err := sw.Send(watchDirResponse{Filesystem: &ev}); err != nil {
					return err
				}
			}
		case <-tick:
			if err := sw.Send(watchDirResponse{Keepalive: &struct{}{}}); err != nil {
				return err
			}
		case <-w.closed:
			return errf("internal", "watcher closed")
		case <-expire:
			return errf("deadline_exceeded", "watch deadline exceeded")
		case <-r.Context().Done():
			return errf("canceled", "client went away")
		}
	}
}

// Polling watchers (CreateWatcher/GetWatcherEvents/RemoveWatcher).
type watcherSet struct {
	mu   sync.Mutex
	next int
	m    map[string]*watcher
}

type createWatcherResponse struct {
	WatcherID string `json:"watcherId"`
}

func (a *agent) rpcCreateWatcher(r *http.Request, req *watchRequest) (*createWatcherResponse, error) {
	path, u, err := a.rpcPath(r, req.Path)
	if err != nil {
		return nil, err
	}
	w, err := newWatcher(path, req.Recursive, req.IncludeEntry, u)
	if err != nil {
		return nil, err
	}
	a.watchers.mu.Lock()
	a.watchers.next++
	id := "w" + strconv.Itoa(a.watchers.next) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	a.watchers.m[id] = w
	a.watchers.mu.Unlock()
	return &createWatcherResponse{WatcherID: id}, nil
}

type watcherIDRequest struct {
	WatcherID string `json:"watcherId"`
}

func (a *agent) findWatcher(id string) (*watcher, error) {
	a.watchers.mu.Lock()
	defer a.watchers.mu.Unlock()
	w, ok := a.watchers.m[id]
	if !ok {
		return nil, errf("not_found", "watcher %q not found", id)
	}
	return w, nil
}

type watcherEventsResponse struct {
	Events []fsEvent `json:"events"`
}

func (a *agent) rpcGetWatcherEvents(r *http.Request, req *watcherIDRequest) (*watcherEventsResponse, error) {
	w, err := a.findWatcher(req.WatcherID)
	if err != nil {
		return nil, err
	}
	ev := w.drain()
	if ev == nil {
		ev = []fsEvent{}
	}
	return &watcherEventsResponse{Events: ev}, nil
}

func (a *agent) rpcRemoveWatcher(r *http.Request, req *watcherIDRequest) (*struct{}, error) {
	w, err := a.findWatcher(req.WatcherID)
	if err != nil {
		return nil, err
	}
	a.watchers.mu.Lock()
	delete(a.watchers.m, req.WatcherID)
	a.watchers.mu.Unlock()
	w.close()
	return &struct{}{}, nil
}
