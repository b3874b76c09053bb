package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

// Scope is what an API key may do: read (inference, search, listings) or write (gallery
// changes, which includes read).
type Scope string

const (
	ScopeRead  Scope = "read"
	ScopeWrite Scope = "write"
)

func (s Scope) allows(need Scope) bool { return s == ScopeWrite || need == ScopeRead }

// Key is one API key: a name for the logs, its scope and the SHA-256 of the secret (the
// secret itself is not kept).
type Key struct {
	Name  string
	Scope Scope
	hash  [sha256.Size]byte
}

// minSecret is the shortest secret accepted in clear.
const minSecret = 16

// ParseKey reads a key entry "name:scope:secret", where secret is the key in clear (at least
// 16 characters) or "sha256:" and the hex SHA-256 of the key (how it is best kept at rest).
func ParseKey(entry string) (Key, error) {
	name, rest, ok1 := strings.Cut(strings.TrimSpace(entry), ":")
	scope, secret, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || name == "" {
		return Key{}, fmt.Errorf("key entry %q: want name:scope:secret", redact(entry))
	}
	k := Key{Name: name, Scope: Scope(scope)}
	if k.Scope != ScopeRead && k.Scope != ScopeWrite {
		return Key{}, fmt.Errorf("key %s: scope %q, want %q or %q", name, scope, ScopeRead, ScopeWrite)
	}
	if h, ok := strings.CutPrefix(secret, "sha256:"); ok {
		raw, err := hex.DecodeString(h)
		if err != nil || len(raw) != sha256.Size {
			return Key{}, fmt.Errorf("key %s: sha256: want 64 hex digits", name)
		}
		copy(k.hash[:], raw)
		return k, nil
	}
	if len(secret) < minSecret {
		return Key{}, fmt.Errorf("key %s: the secret has %d characters, want at least %d (or sha256:<hex>)", name, len(secret), minSecret)
	}
	k.hash = sha256.Sum256([]byte(secret))
	return k, nil
}

// HashKey is the "sha256:<hex>" form of a secret, for key entries kept at rest.
func HashKey(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(h[:])
}

// redact hides what follows the second colon of a key entry.
func redact(entry string) string {
	if i := strings.Index(entry, ":"); i >= 0 {
		if j := strings.Index(entry[i+1:], ":"); j >= 0 {
			return entry[:i+1+j+1] + "…"
		}
	}
	return "…"
}

// Access is who may call the API and from where.
type Access struct {
	// Keys: without any, every request is allowed (the service then listens on loopback only,
	// unless told otherwise); with some, /v1/ needs one.
	Keys []Key
	// AllowedHosts are the names (no port) the Host header may carry; "*" or none: any. This
	// guards a loopback server against DNS rebinding.
	AllowedHosts []string
	// CORSOrigins may call the API from a browser page of another origin (scheme://host:port);
	// "*" allows any. None: same-origin only.
	CORSOrigins []string
}

// checkHost refuses a Host header the server does not answer for.
func (s *Server) checkHost(c *gin.Context) {
	allowed := s.cfg.Access.AllowedHosts
	if len(allowed) == 0 || slices.Contains(allowed, "*") {
		return
	}
	host := c.Request.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if !slices.Contains(allowed, host) {
		s.writeError(c, &requestError{status: http.StatusMisdirectedRequest, code: "unknown_host",
			message: fmt.Sprintf("host %s is not served here (config http.allowed_hosts)", quoteInput(host))})
	}
}

// crossOrigin handles the browser's Origin: a page of another origin may change nothing unless
// it is listed in CORSOrigins, which also get CORS headers and preflight answers.
func (s *Server) crossOrigin(c *gin.Context) {
	origin := c.GetHeader("Origin")
	if origin == "" {
		return
	}
	listed := slices.Contains(s.cfg.Access.CORSOrigins, origin) || slices.Contains(s.cfg.Access.CORSOrigins, "*")
	if listed {
		h := c.Writer.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "Retry-After, X-Request-ID")
		if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, X-API-Key, Content-Type, X-Request-ID")
			h.Set("Access-Control-Max-Age", "600")
			c.AbortWithStatus(http.StatusNoContent)
		}
		return
	}
	switch c.Request.Method {
	case http.MethodGet, http.MethodHead:
		return // the browser keeps the answer from the page: no CORS headers
	}
	if !sameOrigin(origin, c.Request.Host) {
		s.writeError(c, &requestError{status: http.StatusForbidden, code: "forbidden_origin",
			message: fmt.Sprintf("origin %s may not call this API (config http.cors_origins)", quoteInput(origin))})
	}
}

// sameOrigin reports whether a browser Origin names the host the request was sent to.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

// authorize lets the request through when its key has the scope; without configured keys
// everybody may.
func (s *Server) authorize(need Scope) gin.HandlerFunc {
	return func(c *gin.Context) {
		keys := s.cfg.Access.Keys
		if len(keys) == 0 {
			return
		}
		secret := c.GetHeader("X-API-Key")
		if secret == "" {
			if v, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer "); ok {
				secret = strings.TrimSpace(v)
			}
		}
		if secret == "" {
			s.unauthorized(c, "an API key is needed: send it as X-API-Key or Authorization: Bearer")
			return
		}
		key := matchKey(keys, secret)
		if key == nil {
			s.unauthorized(c, "the API key is not valid")
			return
		}
		if !key.Scope.allows(need) {
			s.writeError(c, &requestError{status: http.StatusForbidden, code: "forbidden",
				message: fmt.Sprintf("key %s has scope %s; this needs %s", key.Name, key.Scope, need)})
			return
		}
		c.Set(keyNameContext, key.Name)
	}
}

// keyNameContext is where authorize leaves the caller's key name for the access log.
const keyNameContext = "uniter.key"

// matchKey compares the secret's hash with every key's in constant time, all of them always.
func matchKey(keys []Key, secret string) *Key {
	h := sha256.Sum256([]byte(secret))
	var found *Key
	for i := range keys {
		if subtle.ConstantTimeCompare(h[:], keys[i].hash[:]) == 1 {
			found = &keys[i]
		}
	}
	return found
}

func (s *Server) unauthorized(c *gin.Context, message string) {
	c.Header("WWW-Authenticate", `Bearer realm="uniter"`)
	s.writeError(c, &requestError{status: http.StatusUnauthorized, code: "unauthorized", message: message})
}
