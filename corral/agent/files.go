package main

// GET/POST /files: raw file download and upload (multipart or octet-stream).

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

type fileError struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
}

func writeFileError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(fileError{Message: msg, Code: status})
}

// statusOf maps an os error to the HTTP status of the envd files API.
func statusOf(err error) int {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound
	case errors.Is(err, fs.ErrPermission):
		return http.StatusForbidden
	case errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENOTDIR):
		return http.StatusBadRequest
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

func (a *agent) fileUser(r *http.Request) (*userInfo, error) {
	name := r.URL.Query().Get("username")
	if name == "" {
		name = requestUserName(r)
	}
	return a.resolveUser(name)
}

func (a *agent) handleFiles(w http.ResponseWriter, r *http.Request) {
	u, err := a.fileUser(r)
	if err != nil {
		writeFileError(w, http.StatusUnauthorized, err.Error())
		return
	}
	switch r.Method {
	case http.MethodGet:
		a.download(w, r, u)
	case http.MethodPost:
		a.upload(w, r, u)
	default:
		writeFileError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

func (a *agent) download(w http.ResponseWriter, r *http.Request, u *userInfo) {
	raw := r.URL.Query().Get("path")
	if raw == "" {
		writeFileError(w, http.StatusBadRequest, "path is required")
		return
	}
	path := expandPath(raw, u)
	// Opening is the permission check; reading the open file needs none.
	var f *os.File
	err := asUser(u, func() (err error) {
		f, err = os.Open(path)
		return err
	})
	if err != nil {
		writeFileError(w, statusOf(err), "cannot open "+path+": "+err.Error())
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		writeFileError(w, statusOf(err), err.Error())
		return
	}
	if st.IsDir() {
		writeFileError(w, http.StatusBadRequest, "path '"+path+"' is a directory")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": filepath.Base(path)}))
	if acceptsGzip(r) {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		gz := gzip.NewWriter(w)
		_, _ = copyLarge(gz, f)
		_ = gz.Close()
		return
	}
	if st.Mode().IsRegular() {
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = copyLarge(w, f)
}

// acceptsGzip says whether a download is sent gzip-compressed: only when the
// client asked for gzip alone (the SDK's read(gzip=True) sends exactly that).
// A generic list such as httpx's default "gzip, deflate" gets identity, which
// every client accepts: the gateway is on loopback or a LAN, where compressing
// costs more than it saves (1 MiB of random bytes: ~35 ms of CPU in gVisor,
// for nothing).
func acceptsGzip(r *http.Request) bool {
	var codings []string
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if name = strings.ToLower(strings.TrimSpace(name)); name != "" && strings.ReplaceAll(q, " ", "") != "q=0" {
			codings = append(codings, name)
		}
	}
	return len(codings) == 1 && codings[0] == "gzip"
}

type writeInfo struct {
	Name     string            `json:"name"`
	Path     string            `json:"path"`
	Type     string            `json:"type"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func (a *agent) upload(w http.ResponseWriter, r *http.Request, u *userInfo) {
	md, err := metadataFromHeaders(r.Header)
	if err != nil {
		writeFileError(w, http.StatusBadRequest, err.Error())
		return
	}
	qpath := r.URL.Query().Get("path")
	ctype, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var out []writeInfo
	if ctype == "multipart/form-data" {
		mr := multipart.NewReader(bufferedBody(r.Body), params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				writeFileError(w, http.StatusBadRequest, "bad multipart body: "+err.Error())
				return
			}
			if part.FormName() != "file" {
				continue
			}
			// Part.FileName() strips directories; the SDK puts the full
			// target path there when it uploads several files at once.
			_, dp, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
			target := dp["filename"]
			if qpath != "" && len(out) == 0 {
				target = qpath
			}
			if target == "" {
				writeFileError(w, http.StatusBadRequest, "no path for uploaded file")
				return
			}
			wi, status, err := writeFile(expandPath(target, u), part, u, md)
			if err != nil {
				writeFileError(w, status, err.Error())
				return
			}
			out = append(out, *wi)
		}
	} else {
		if qpath == "" {
			writeFileError(w, http.StatusBadRequest, "path is required for an octet-stream upload")
			return
		}
		body := bufferedBody(r.Body)
		if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
			gz, err := gzip.NewReader(body)
			if err != nil {
				writeFileError(w, http.StatusBadRequest, "bad gzip body: "+err.Error())
				return
			}
			defer gz.Close()
			body = gz
		}
		wi, status, err := writeFile(expandPath(qpath, u), body, u, md)
		if err != nil {
			writeFileError(w, status, err.Error())
			return
		}
		out = append(out, *wi)
	}
	if len(out) == 0 {
		writeFileError(w, http.StatusBadRequest, "no file in request")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// writeFile creates/overwrites path with src, making parents, as u.
func writeFile(path string, src io.Reader, u *userInfo, md map[string]string) (*writeInfo, int, error) {
	var f *os.File
	status := 0
	err := asUser(u, func() error {
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			status = http.StatusBadRequest
			return errors.New("path '" + path + "' is a directory")
		}
		if err := mkdirAllAs(filepath.Dir(path), u); err != nil {
			status = statusOf(err)
			return errors.New("cannot create parent directory: " + err.Error())
		}
		var err error
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
			status = statusOf(err)
			return errors.New("cannot open " + path + ": " + err.Error())
		}
		return nil
	})
	if err != nil {
		if status == 0 {
			status = http.StatusInternalServerError
		}
		return nil, status, err
	}
	// The body is copied outside asUser: it may wait on the network.
	_, err = copyLarge(f, src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, statusOf(err), errors.New("cannot write " + path + ": " + err.Error())
	}
	_ = asUser(u, func() error {
		chownTo(path, u)
		replaceMetadata(path, md)
		return nil
	})
	wi := &writeInfo{Name: filepath.Base(path), Path: path, Type: "file"}
	if len(md) > 0 {
		wi.Metadata = md
	}
	return wi, 0, nil
}
