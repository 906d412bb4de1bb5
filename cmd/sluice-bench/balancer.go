package main

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// runBalancer serves a round-robin HTTP load balancer (each request to the
// next backend, as nginx's default upstream or a cloud L7 balancer does)
// for the agents of -replicas: spec is LISTEN=URL,URL,....
func runBalancer(spec string) error {
	listen, list, ok := strings.Cut(spec, "=")
	if !ok || list == "" {
		return fmt.Errorf("want LISTEN=URL,URL,..., got %q", spec)
	}
	var backends []*url.URL
	for _, s := range strings.Split(list, ",") {
		u, err := url.Parse(s)
		if err != nil {
			return err
		}
		backends = append(backends, u)
	}
	var next atomic.Uint64
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(backends[next.Add(1)%uint64(len(backends))])
		},
		Transport:     &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute},
		FlushInterval: -1,
	}
	srv := &http.Server{Addr: listen, Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}
