package engine

import (
	"net/http"
	"strings"
)

// EventStream is the media type of a Streamable HTTP event stream.
const EventStream = "text/event-stream"

// AcceptsEventStream reports whether the Accept header in h takes an event
// stream.
func AcceptsEventStream(h http.Header) bool {
	for _, v := range h.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			if IsEventStream(part) {
				return true
			}
		}
	}
	return false
}

// IsEventStream reports whether a media type (parameters allowed) is
// text/event-stream.
func IsEventStream(mediaType string) bool {
	mt, _, _ := strings.Cut(mediaType, ";")
	return strings.EqualFold(strings.TrimSpace(mt), EventStream)
}

// IsJSON reports whether a Content-Type value (parameters allowed) is
// application/json.
func IsJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}
