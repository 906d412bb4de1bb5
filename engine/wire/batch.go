package wire

import (
	"errors"
	"strconv"
	"strings"

	"github.com/sluicemcp/sluice/engine/internal/jsonscan"
)

// Sluice's response-batch extension (docs/wire.md, RATIONALE.md).
//
// A relay that accepts it says so with HeaderExtensions on its agent-API
// answers (poll and metadata). An agent that sees it may deliver several final
// responses in one POST to BatchPath: the body is {"responses":[…]} holding
// ordinary response objects, and HeaderShardToken carries their shard tokens,
// comma-separated in the same order (tokens stay out of the body, as on the
// standard endpoint). The relay answers 200 {"statuses":[…]}, one HTTP status
// per item with the meaning it has on the standard endpoint (200 delivered,
// 404 pending_request_not_found, 401 token mismatch, 400 malformed item). Any
// other answer means no item was taken as such: the agent posts them one by
// one. Relays and agents that do not know the extension never see it.
const (
	// HeaderExtensions lists the Sluice wire extensions a relay accepts.
	HeaderExtensions = "X-Sluice-Extensions"
	// ExtResponseBatch names the response-batch extension.
	ExtResponseBatch = "response-batch"
	// BatchPath is the batch endpoint under /v1/tunnels/{id}.
	BatchPath = "/responses"
	// MaxBatchItems bounds the responses in one batch.
	MaxBatchItems = 64
)

// HasExtension reports whether a HeaderExtensions value lists ext.
func HasExtension(header, ext string) bool {
	for header != "" {
		var item string
		item, header, _ = strings.Cut(header, ",")
		if strings.TrimSpace(item) == ext {
			return true
		}
	}
	return false
}

var errBatchShape = errors.New(`batch body must be {"responses":[…]} with 1 to 64 objects`)

// DecodeResponseBatch splits a batch body into its raw items (sub-slices of
// body, each to be decoded with DecodeResponse). It checks the framing and
// that every item is valid JSON, not the items' fields.
func DecodeResponseBatch(body []byte) ([][]byte, error) {
	s := &jsonscan.Scanner{B: body}
	var items [][]byte
	seen := false
	err := s.Object(func(key []byte) error {
		if string(key) != "responses" {
			_, err := s.Value(0)
			return err
		}
		if seen {
			return errBatchShape
		}
		seen = true
		if s.Peek() != '[' {
			return errBatchShape
		}
		return s.Array(func() error {
			if s.Peek() != '{' || len(items) == MaxBatchItems {
				return errBatchShape
			}
			v, err := s.Value(0)
			items = append(items, v)
			return err
		})
	})
	if err == nil {
		err = s.End()
	}
	if err != nil {
		if err == jsonscan.ErrFallback {
			err = errBatchShape
		}
		return nil, err
	}
	if len(items) == 0 {
		return nil, errBatchShape
	}
	return items, nil
}

// SplitShardTokens splits a batch's HeaderShardToken value.
func SplitShardTokens(v string) []string {
	if v == "" {
		return nil
	}
	toks := strings.Split(v, ",")
	for i, t := range toks {
		toks[i] = strings.TrimSpace(t)
	}
	return toks
}

// AppendBatchStatuses appends the batch answer {"statuses":[…]}.
func AppendBatchStatuses(dst []byte, statuses []int) []byte {
	dst = append(dst, `{"statuses":[`...)
	for i, st := range statuses {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(st), 10)
	}
	return append(dst, "]}"...)
}

// DecodeBatchStatuses reads a batch answer; it must hold exactly n statuses.
func DecodeBatchStatuses(body []byte, n int) ([]int, error) {
	s := &jsonscan.Scanner{B: body}
	var out []int
	err := s.Object(func(key []byte) error {
		if string(key) != "statuses" {
			_, err := s.Value(0)
			return err
		}
		return s.Array(func() error {
			start := s.I
			if err := s.Number(); err != nil {
				return err
			}
			st, err := strconv.Atoi(string(body[start:s.I]))
			if err != nil || st < 100 || st > 599 {
				return errors.New("batch status out of range")
			}
			out = append(out, st)
			return nil
		})
	})
	if err == nil {
		err = s.End()
	}
	if err != nil {
		return nil, err
	}
	if len(out) != n {
		return nil, errors.New("batch answer holds " + strconv.Itoa(len(out)) + " statuses for " + strconv.Itoa(n) + " responses")
	}
	return out, nil
}
