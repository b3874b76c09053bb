package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// healthcheckCmd asks a running server whether it is ready (GET /readyz), for container health
// checks: the slim image has no curl. Exit status 0 when the answer is 200, 1 otherwise, with one
// line on stderr saying why.
func healthcheckCmd(load loader) *cobra.Command {
	var url string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "exit 0 when the server answers GET /readyz with 200, 1 otherwise (for container health checks)",
		Long: "healthcheck sends GET /readyz to the server and exits 0 on a 200 answer, 1 otherwise with one line\n" +
			"on stderr saying why. Without --url it asks the configured addr (0.0.0.0, :: or an empty host\n" +
			"become 127.0.0.1) with a Host header that http.allowed_hosts accepts.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return fmt.Errorf("healthcheck: --timeout must be positive, got %v", timeout)
			}
			target, host := url, ""
			if target == "" {
				// Only addr and http.allowed_hosts matter here: a config the server itself would refuse
				// elsewhere (a bundle folder this process cannot see, say) does not stop the probe.
				cfg, err := load(cmd)
				if cfg == nil {
					return oneLine(fmt.Errorf("healthcheck: %w", err))
				}
				if target, host, err = readyURL(cfg.Addr, cfg.HTTP.AllowedHosts); err != nil {
					return oneLine(fmt.Errorf("healthcheck: %w", err))
				}
			}
			return oneLine(probeReady(cmd.Context(), target, host, timeout))
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "URL to ask (default: /readyz on the configured addr, e.g. http://127.0.0.1:8080/readyz)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	return cmd
}

// readyURL is the /readyz URL of a server listening on addr, and the Host header to send when
// the address itself is not among the allowed host names (empty: the URL's own).
func readyURL(addr string, allowedHosts []string) (url, hostHeader string, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("config addr: %q is not host:port: %v", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every interface: loopback is one of them
	}
	url = "http://" + net.JoinHostPort(host, port) + "/readyz"
	if len(allowedHosts) > 0 && !slices.Contains(allowedHosts, "*") {
		lower := make([]string, len(allowedHosts))
		for i, h := range allowedHosts {
			lower[i] = strings.ToLower(h)
		}
		if !slices.Contains(lower, strings.ToLower(host)) {
			hostHeader = net.JoinHostPort(lower[0], port)
		}
	}
	return url, hostHeader, nil
}

// probeReady returns nil when url answers 200 within timeout, otherwise an error saying why.
func probeReady(ctx context.Context, url, hostHeader string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	if hostHeader != "" {
		req.Host = hostHeader
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("healthcheck: GET %s: no answer within %v", url, timeout)
		}
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	msg := fmt.Sprintf("healthcheck: GET %s answered %s", url, resp.Status)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		msg += ": " + e.Error.Message
	} else if s := strings.TrimSpace(string(body)); s != "" {
		if len(s) > 120 {
			s = s[:120] + "…"
		}
		msg += ": " + s
	}
	return errors.New(msg)
}

// oneLine keeps an error on one line of stderr (errors.Join and some bodies have several).
func oneLine(err error) error {
	if err == nil || !strings.ContainsAny(err.Error(), "\r\n") {
		return err
	}
	return errors.New(strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " "))
}
