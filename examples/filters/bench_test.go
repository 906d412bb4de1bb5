package filters

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine"
)

// benchResponse is a tools/call result of about size bytes whose text holds
// one account number near its end: the filter scans it all and masks one.
func benchResponse(size int) string {
	head := `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"`
	tail := ` account ACCT-1234."}]}}`
	return head + strings.Repeat("lorem ipsum ", (size-len(head)-len(tail))/12+1)[:size-len(head)-len(tail)] + tail
}

func benchRequest(size int) string {
	head := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"lookup","arguments":{"q":"`
	tail := `"}}}`
	return head + strings.Repeat("x", size-len(head)-len(tail)) + tail
}

// BenchmarkFilters measures one stage call of each example filter (Handle on
// an open filter, as the chain makes it): a tools/call request that is
// tagged (1 KiB) and a tools/call result that is scanned and masked (1 KiB
// and 256 KiB). It reports the module's size and the memory of an instance
// after the calls. "reference" is the same masking in native Go, no Wasm,
// measured in the same run.
func BenchmarkFilters(b *testing.B) {
	cases := []struct {
		name string
		m    *engine.Message
		want engine.Action
	}{
		{"request/1KiB", message(engine.HookRequest, "tools/call", "lookup", benchRequest(1<<10)), engine.Replace},
		{"response/1KiB", message(engine.HookResponse, "tools/call", "lookup", benchResponse(1<<10)), engine.Replace},
		{"response/256KiB", message(engine.HookResponse, "tools/call", "lookup", benchResponse(256<<10)), engine.Replace},
	}
	for _, c := range cases[1:] {
		b.Run("reference/"+c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.m.Body)))
			for b.Loop() {
				if out := maskReference(c.m.Body, "ACCT-####"); out == nil {
					b.Fatal("no match")
				}
			}
		})
	}
	rt := newRuntime(b)
	for _, l := range Langs {
		path := module(b, l.Name)
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		st, err := loadFilter(b, rt, l.Name, config(l.Name))
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("%s-%s/%s", l.Name, l.ABI, c.name), func(b *testing.B) {
				f, err := st.Open(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				b.SetBytes(int64(len(c.m.Body)))
				for b.Loop() {
					res, err := f.Handle(context.Background(), c.m)
					if err != nil || res.Action != c.want {
						b.Fatalf("%v %v", res.Action, err)
					}
				}
				// One more call: the last one may have recycled the instance.
				if _, err := f.Handle(context.Background(), c.m); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(fi.Size()), "module-bytes")
				b.ReportMetric(float64(st.InstanceMemory()), "instance-bytes")
			})
		}
		_ = st.Close()
	}
}

// maskReference is the filters' masking in plain Go (the first literal
// byte as prefilter, as in every filter), the reference the guests are
// compared with. The mask starts with a literal here.
func maskReference(body []byte, mask string) []byte {
	var out []byte
	for i := 0; i+len(mask) <= len(body); i++ {
		j := bytes.IndexByte(body[i:], mask[0])
		if j < 0 {
			break
		}
		i += j
		if i+len(mask) > len(body) || i > 0 && body[i-1] == '\\' {
			continue
		}
		ok := true
		for j := 1; j < len(mask) && ok; j++ {
			c := body[i+j]
			if mask[j] == '#' {
				ok = c >= '0' && c <= '9'
			} else {
				ok = c == mask[j]
			}
		}
		if ok {
			if out == nil {
				out = bytes.Clone(body)
			}
			copy(out[i:], bytes.Repeat([]byte{'*'}, len(mask)))
			i += len(mask) - 1
		}
	}
	return out
}
