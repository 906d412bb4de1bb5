package wire

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestHasExtension(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{"response-batch", true},
		{"a, response-batch ,b", true},
		{"response-batches", false},
		{"", false},
		{"x-response-batch", false},
	} {
		if got := HasExtension(tc.header, ExtResponseBatch); got != tc.want {
			t.Errorf("HasExtension(%q) = %v", tc.header, got)
		}
	}
}

func TestDecodeResponseBatch(t *testing.T) {
	many := func(n int) string { return `{"responses":[` + strings.TrimSuffix(strings.Repeat(`{},`, n), ",") + `]}` }
	for _, tc := range []struct {
		body  string
		items []string // nil: an error
	}{
		{`{"responses":[{"request_id":"a"},{"request_id":"b","resp_json":{"x":[1,{}]}}]}`, []string{`{"request_id":"a"}`, `{"request_id":"b","resp_json":{"x":[1,{}]}}`}},
		{" {\"v\":1, \"responses\" : [ {} ] } \n", []string{`{}`}},
		{many(MaxBatchItems), strings.Split(strings.Repeat("{} ", MaxBatchItems-1)+"{}", " ")},
		{many(MaxBatchItems + 1), nil},
		{`{"responses":[]}`, nil},
		{`{"responses":[{}, 1]}`, nil},
		{`{"responses":[{}],"responses":[{}]}`, nil},
		{`{"other":[{}]}`, nil},
		{`{"responses":[{}]`, nil},
		{`{"responses":[{}]} x`, nil},
		{`[{}]`, nil},
		{`{"respon\u0073es":[{}]}`, nil},
	} {
		items, err := DecodeResponseBatch([]byte(tc.body))
		if tc.items == nil {
			if err == nil {
				t.Errorf("%.60s: no error", tc.body)
			}
			continue
		}
		if err != nil {
			t.Errorf("%.60s: %v", tc.body, err)
			continue
		}
		var got []string
		for _, it := range items {
			got = append(got, string(it))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.items) {
			t.Errorf("%.60s: items %q, want %q", tc.body, got, tc.items)
		}
	}
}

func TestBatchStatuses(t *testing.T) {
	b := AppendBatchStatuses(nil, []int{200, 404, 401})
	if string(b) != `{"statuses":[200,404,401]}` {
		t.Fatalf("encoded %s", b)
	}
	if st, err := DecodeBatchStatuses(b, 3); err != nil || fmt.Sprint(st) != "[200 404 401]" {
		t.Fatalf("decoded %v %v", st, err)
	}
	for _, bad := range []string{`{"statuses":[200,404]}`, `{"statuses":[200,404,99]}`, `{"statuses":[200,404,"x"]}`, `{"statuses":[200,404,401.5]}`, `{}`, `x`} {
		if _, err := DecodeBatchStatuses([]byte(bad), 3); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	if got := SplitShardTokens(" a,b , c"); fmt.Sprint(got) != "[a b c]" {
		t.Errorf("SplitShardTokens = %q", got)
	}
}

// FuzzDecodeResponseBatch holds the batch decoder to encoding/json: what it
// accepts is a JSON object whose "responses" member is an array of 1 to 64
// objects, and the items are exactly those objects.
func FuzzDecodeResponseBatch(f *testing.F) {
	for _, s := range []string{`{"responses":[{"request_id":"a"},{}]}`, `{"responses":[]}`, `{"a":1,"responses":[{"x":"\u00e9"}]}`, `{"responses":[{}],"responses":[{}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := DecodeResponseBatch(body)
		if err != nil {
			return
		}
		var doc struct {
			Responses []json.RawMessage `json:"responses"`
		}
		if jerr := json.Unmarshal(body, &doc); jerr != nil {
			t.Fatalf("accepted what encoding/json rejects (%v): %q", jerr, body)
		}
		if len(items) != len(doc.Responses) || len(items) < 1 || len(items) > MaxBatchItems {
			t.Fatalf("%d items, encoding/json sees %d: %q", len(items), len(doc.Responses), body)
		}
		for i, it := range items {
			var m map[string]json.RawMessage
			if json.Unmarshal(it, &m) != nil {
				t.Fatalf("item %d is not an object: %q", i, it)
			}
		}
	})
}

// TestBatchMatchesOwnSchema: the batch fixture satisfies the project's schema
// and decodes into items that are ordinary responses; the batch answer the
// relay writes satisfies its schema too.
func TestBatchMatchesOwnSchema(t *testing.T) {
	batch := compile(t, ownSchema, "/$defs/responseBatch")
	statuses := compile(t, ownSchema, "/$defs/batchStatuses")
	b := readFixture(t, "response_batch.json")
	if err := validate(t, batch, b); err != nil {
		t.Fatal(err)
	}
	items, err := DecodeResponseBatch(b)
	if err != nil || len(items) != 2 {
		t.Fatalf("DecodeResponseBatch: %d items, %v", len(items), err)
	}
	for i, want := range []string{"req_01", "req_02"} {
		r, err := DecodeResponse(items[i])
		if err != nil || r.RequestID != want {
			t.Errorf("item %d: %+v %v", i, r, err)
		}
	}
	if err := validate(t, statuses, AppendBatchStatuses(nil, []int{200, 404})); err != nil {
		t.Error(err)
	}
	// The schema is strict: a status out of range is refused.
	if err := validate(t, statuses, []byte(`{"statuses":[99]}`)); err == nil {
		t.Error("schema accepted status 99")
	}
}
