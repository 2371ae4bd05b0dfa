package ops

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// web holds the dashboard: one HTML page, its stylesheet and script. They
// carry no data: everything shown comes from the JSON API, with the token.
//
//go:embed web
var web embed.FS

func assetHandler() http.Handler {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic("BUG: embedded dashboard: " + err.Error())
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/" || r.URL.Path == "/index.html":
			// The page is small and changes with the binary: always revalidate.
			w.Header().Set("Cache-Control", "no-cache")
		case strings.HasPrefix(r.URL.Path, "/assets/"):
			w.Header().Set("Cache-Control", "no-cache")
		default:
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}
