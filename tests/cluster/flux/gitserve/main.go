// gitserve serves the Git repositories under a directory over smart HTTP, read-only, on a
// loopback address: `git http-backend` (Git's own server side) behind Go's CGI handler. It is the
// Git host Flux's source-controller clones from in the end-to-end tests; commits are made into the
// bare repositories directly.
//
//	gitserve -root DIR -listen 127.0.0.1:PORT
//
// GET /healthz answers ok once it listens.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"os/exec"
	"strings"
)

func main() {
	root := flag.String("root", "", "directory holding the bare repositories (NAME.git)")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	flag.Parse()
	if *root == "" {
		log.Fatal("-root is required")
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("-listen %q: only loopback addresses are served", *listen)
	}
	backend, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		log.Fatalf("git --exec-path: %v", err)
	}
	handler := &cgi.Handler{
		Path: strings.TrimSpace(string(backend)) + "/git-http-backend",
		Env: []string{
			"GIT_PROJECT_ROOT=" + *root,
			// Every repository under the root is served, without a git-daemon-export-ok file.
			"GIT_HTTP_EXPORT_ALL=1",
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// Read-only: pushes go to the bare repositories on disk, never over HTTP.
		if r.URL.Query().Get("service") == "git-receive-pack" || strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
			http.Error(w, "read-only", http.StatusForbidden)
			return
		}
		handler.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving %s on http://%s", *root, ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
