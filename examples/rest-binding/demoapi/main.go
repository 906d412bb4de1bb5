// Command demoapi is a tiny todo REST API for trying the rest-binding
// example: it listens on 127.0.0.1:8081 (or -addr) and wants the header
// Authorization: Bearer demo-token, which the Sluice host adds to the
// plugin's requests from the operator's config (the plugin never sees it).
//
//	GET  /todos        all todos
//	GET  /todos/{id}   one todo (404 when there is none)
//	POST /todos        {"title": "…"} adds one
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strconv"
	"sync"
)

type todo struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
	Done  bool   `json:"done"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	token := flag.String("token", "demo-token", "the bearer token callers must present")
	flag.Parse()
	var mu sync.Mutex
	todos := []todo{{ID: 1, Title: "try the rest-binding example"}, {ID: 2, Title: "write a binding for a real API", Done: false}}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /todos", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		reply(w, http.StatusOK, map[string]any{"todos": todos})
	})
	mux.HandleFunc("GET /todos/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		mu.Lock()
		defer mu.Unlock()
		for _, t := range todos {
			if t.ID == id {
				reply(w, http.StatusOK, t)
				return
			}
		}
		reply(w, http.StatusNotFound, map[string]string{"error": "no todo " + r.PathValue("id")})
	})
	mux.HandleFunc("POST /todos", func(w http.ResponseWriter, r *http.Request) {
		var in todo
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&in); err != nil || in.Title == "" {
			reply(w, http.StatusBadRequest, map[string]string{"error": "want {\"title\": \"…\"}"})
			return
		}
		mu.Lock()
		in.ID = len(todos) + 1
		todos = append(todos, in)
		mu.Unlock()
		reply(w, http.StatusCreated, in)
	})
	auth := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+*token {
			reply(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong token"})
			return
		}
		mux.ServeHTTP(w, r)
	})
	log.Printf("demo todo API on http://%s (token %q)", *addr, *token)
	log.Fatal(http.ListenAndServe(*addr, auth))
}
