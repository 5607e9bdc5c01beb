// Command echo-agent is the smallest agent to put an iatp sidecar in front
// of: it answers every JSON POST with what it was asked. It listens on
// 127.0.0.1:8000, so that only the sidecar on the same host reaches it.
package main

import (
	"encoding/json"
	"log"
	"net/http"
)

func main() {
	http.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		var task map[string]any
		if err := json.NewDecoder(r.Body).Decode(&task); err != nil {
			http.Error(w, `{"error":"send a JSON object"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"agent": "echo", "done": task})
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:8000", nil))
}
