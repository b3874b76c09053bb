package api

import (
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"
)

// static serves the page's embedded files (Config.Assets) under /static/. Like "/", it answers
// with c.Data rather than gin's FileFromFS (which redirects index.html forever); directories and
// missing files are the usual JSON 404.
func (s *Server) static(c *gin.Context) {
	name := strings.TrimPrefix(c.Param("path"), "/")
	raw, err := fs.ReadFile(s.cfg.Assets, name)
	if !fs.ValidPath(name) || err != nil {
		s.writeError(c, &requestError{status: http.StatusNotFound, code: "not_found", message: "no file /static/" + name})
		return
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	// The files change with the binary: revalidate rather than cache across upgrades.
	c.Header("Cache-Control", "no-cache")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Data(http.StatusOK, ctype, raw)
}
