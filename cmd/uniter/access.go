package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/api"
)

// AuthConfig are the API key settings (auth.*).
type AuthConfig struct {
	Keys           []string `mapstructure:"keys"`      // entries name:scope:secret (UNITER_AUTH_KEYS: comma-separated)
	KeysFile       string   `mapstructure:"keys_file"` // one entry a line; # comments
	InsecureNoAuth bool     `mapstructure:"insecure_no_auth"`
}

// HTTPConfig are the browser-safety settings (http.*).
type HTTPConfig struct {
	AllowedHosts []string `mapstructure:"allowed_hosts"`
	CORSOrigins  []string `mapstructure:"cors_origins"`
}

// keys reads every configured key entry, from auth.keys and auth.keys_file.
func (c *Config) keys() ([]api.Key, error) {
	entries := append([]string(nil), c.Auth.Keys...)
	if c.Auth.KeysFile != "" {
		f, err := os.Open(c.Auth.KeysFile)
		if err != nil {
			return nil, fmt.Errorf("config auth.keys_file: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
				entries = append(entries, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("config auth.keys_file: %w", err)
		}
	}
	keys := make([]api.Key, 0, len(entries))
	names := map[string]bool{}
	for _, e := range entries {
		k, err := api.ParseKey(e)
		if err != nil {
			return nil, fmt.Errorf("config auth.keys: %w", err)
		}
		if names[k.Name] {
			return nil, fmt.Errorf("config auth.keys: key name %s is used twice", k.Name)
		}
		names[k.Name] = true
		keys = append(keys, k)
	}
	return keys, nil
}

// access is the API's access policy for this configuration. Serving beyond loopback without
// keys is refused unless auth.insecure_no_auth says so; on loopback, only loopback host names
// (and the address's own) may reach the server, against DNS rebinding.
func (c *Config) access() (api.Access, error) {
	keys, err := c.keys()
	if err != nil {
		return api.Access{}, err
	}
	host, _, _ := net.SplitHostPort(c.Addr)
	loopback := isLoopback(host)
	if !loopback && len(keys) == 0 && !c.Auth.InsecureNoAuth {
		return api.Access{}, fmt.Errorf("config addr: %s listens beyond loopback, so API keys are needed "+
			"(auth.keys, auth.keys_file; `uniter keygen` makes one), or auth.insecure_no_auth: true (--insecure-no-auth) to serve everyone", c.Addr)
	}
	a := api.Access{Keys: keys, CORSOrigins: c.HTTP.CORSOrigins}
	for _, h := range c.HTTP.AllowedHosts {
		a.AllowedHosts = append(a.AllowedHosts, strings.ToLower(h))
	}
	if len(a.AllowedHosts) == 0 && loopback {
		a.AllowedHosts = []string{"localhost", "127.0.0.1", "::1"}
		if host != "" && host != "localhost" {
			a.AllowedHosts = append(a.AllowedHosts, strings.ToLower(host))
		}
	}
	return a, nil
}

// isLoopback reports whether a listen host reaches this machine only.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func keygenCmd() *cobra.Command {
	var name, scope string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "make a random API key and the hashed entry to configure it with",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw := make([]byte, 24)
			if _, err := rand.Read(raw); err != nil {
				return err
			}
			secret := base64.RawURLEncoding.EncodeToString(raw)
			entry := name + ":" + scope + ":" + api.HashKey(secret)
			if _, err := api.ParseKey(entry); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key:   %s\nentry: %s\n", secret, entry)
			fmt.Fprintln(cmd.ErrOrStderr(), "Give the key to the client; put the entry in auth.keys_file (or UNITER_AUTH_KEYS). The server keeps only its hash.")
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "default", "the key's name in the logs")
	cmd.Flags().StringVar(&scope, "scope", string(api.ScopeRead), "read (inference, search) or write (also gallery changes)")
	return cmd
}
