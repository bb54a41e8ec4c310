package main

// Handlers of the filesystem.Filesystem Connect service (all but watching).

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
)

func (a *agent) registerFilesystemService(mux *http.ServeMux) {
	const pfx = "/filesystem.Filesystem/"
	mux.Handle(pfx+"Stat", unary(a.rpcStat))
	mux.Handle(pfx+"MakeDir", unary(a.rpcMakeDir))
	mux.Handle(pfx+"Move", unary(a.rpcMove))
	mux.Handle(pfx+"ListDir", unary(a.rpcListDir))
	mux.Handle(pfx+"Remove", unary(a.rpcRemove))
	mux.Handle(pfx+"WatchDir", serverStream(a.rpcWatchDir))
	mux.Handle(pfx+"CreateWatcher", unary(a.rpcCreateWatcher))
	mux.Handle(pfx+"GetWatcherEvents", unary(a.rpcGetWatcherEvents))
	mux.Handle(pfx+"RemoveWatcher", unary(a.rpcRemoveWatcher))
}

type pathRequest struct {
	Path string `json:"path"`
}

type entryResponse struct {
	Entry *entryInfo `json:"entry"`
}

// rpcPath resolves the request's path for the request's user.
func (a *agent) rpcPath(r *http.Request, p string) (string, *userInfo, error) {
	u, err := a.resolveUser(requestUserName(r))
	if err != nil {
		return "", nil, err
	}
	if p == "" {
		return "", nil, errf("invalid_argument", "path is required")
	}
	return expandPath(p, u), u, nil
}

func (a *agent) rpcStat(r *http.Request, req *pathRequest) (*entryResponse, error) {
	path, u, err := a.rpcPath(r, req.Path)
	if err != nil {
		return nil, err
	}
	var e *entryInfo
	err = asUser(u, func() (err error) {
		e, err = statEntry(path)
		return fsError(err, path)
	})
	if err != nil {
		return nil, err
	}
	return &entryResponse{e}, nil
}

func (a *agent) rpcMakeDir(r *http.Request, req *pathRequest) (*entryResponse, error) {
	path, u, err := a.rpcPath(r, req.Path)
	if err != nil {
		return nil, err
	}
	var resp *entryResponse
	err = asUser(u, func() (err error) {
		resp, err = makeDir(path, u)
		return err
	})
	return resp, err
}

func makeDir(path string, u *userInfo) (*entryResponse, error) {
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return nil, errf("already_exists", "directory %q already exists", path)
		}
		return nil, errf("invalid_argument", "path %q exists and is not a directory", path)
	}
	if err := mkdirAllAs(path, u); err != nil {
		return nil, fsError(err, path)
	}
	e, err := statEntry(path)
	if err != nil {
		return nil, fsError(err, path)
	}
	return &entryResponse{e}, nil
}

type moveRequest struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
}

func (a *agent) rpcMove(r *http.Request, req *moveRequest) (*entryResponse, error) {
	src, u, err := a.rpcPath(r, req.Source)
	if err != nil {
		return nil, err
	}
	dst, _, err := a.rpcPath(r, req.Destination)
	if err != nil {
		return nil, err
	}
	var resp *entryResponse
	err = asUser(u, func() (err error) {
		resp, err = move(src, dst, u)
		return err
	})
	return resp, err
}

func move(src, dst string, u *userInfo) (*entryResponse, error) {
	if _, err := os.Lstat(src); err != nil {
		return nil, fsError(err, src)
	}
	if err := mkdirAllAs(filepath.Dir(dst), u); err != nil {
		return nil, fsError(err, dst)
	}
	if err := os.Rename(src, dst); err != nil {
		return nil, fsError(err, dst)
	}
	e, err := statEntry(dst)
	if err != nil {
		return nil, fsError(err, dst)
	}
	return &entryResponse{e}, nil
}

type listDirRequest struct {
	Path  string `json:"path"`
	Depth uint32 `json:"depth"`
}

type listDirResponse struct {
	Entries []*entryInfo `json:"entries"`
}

func (a *agent) rpcListDir(r *http.Request, req *listDirRequest) (*listDirResponse, error) {
	path, u, err := a.rpcPath(r, req.Path)
	if err != nil {
		return nil, err
	}
	var resp *listDirResponse
	err = asUser(u, func() (err error) {
		resp, err = listDir(path, int(req.Depth))
		return err
	})
	return resp, err
}

func listDir(path string, depth int) (*listDirResponse, error) {
	if depth == 0 {
		depth = 1
	}
	// A symlink to a directory is listed as that directory.
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fsError(err, path)
	}
	if !st.IsDir() {
		return nil, errf("invalid_argument", "path %q is not a directory", path)
	}
	out := &listDirResponse{Entries: []*entryInfo{}}
	if err := listInto(path, depth, &out.Entries); err != nil {
		return nil, fsError(err, path)
	}
	return out, nil
}

// listInto appends dir's entries, descending depth-1 more levels into real
// (non-symlink) directories.
func listInto(dir string, depth int, out *[]*entryInfo) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range ents {
		p := filepath.Join(dir, de.Name())
		info, err := de.Info()
		if err != nil {
			continue // vanished meanwhile
		}
		*out = append(*out, entryFromInfo(p, info))
		if depth > 1 && de.IsDir() {
			if err := listInto(p, depth-1, out); err != nil && !errors.Is(err, fs.ErrPermission) {
				continue
			}
		}
	}
	return nil
}

func (a *agent) rpcRemove(r *http.Request, req *pathRequest) (*struct{}, error) {
	path, u, err := a.rpcPath(r, req.Path)
	if err != nil {
		return nil, err
	}
	err = asUser(u, func() error {
		if _, err := os.Lstat(path); err != nil {
			return fsError(err, path)
		}
		return fsError(os.RemoveAll(path), path)
	})
	if err != nil {
		return nil, err
	}
	return &struct{}{}, nil
}
