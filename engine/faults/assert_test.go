package faults

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/faults/faultkit"
)

// recorder is a testing.TB that records what the assertions report
// instead of failing the test.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestAssertions: the assertions every scenario shares report what they
// are for, and only that: a sound result passes them all; each fault
// (a hung, mismatched or duplicated call, an error, an error of a kind the
// scenario does not allow, no success after a moment) is reported, by the
// assertion meant for it.
func TestAssertions(t *testing.T) {
	t0 := time.Now()
	ok := func(id string, start time.Duration) *faultkit.Call {
		return &faultkit.Call{ID: id, Class: faultkit.ClassOK, Start: t0.Add(start), End: t0.Add(start + 10*time.Millisecond), Executed: 1}
	}
	failed := func(id, kind string, start time.Duration) *faultkit.Call {
		c := ok(id, start)
		c.Class, c.Kind, c.Executed = faultkit.ClassError, kind, 0
		return c
	}
	sound := &faultkit.Result{Calls: []*faultkit.Call{ok("c-1", 0), failed("c-2", "http_504", time.Second), ok("c-3", 2*time.Second)}}
	for _, tc := range []struct {
		name string
		res  *faultkit.Result
		run  func(testing.TB, *faultkit.Result)
		want string // "" = no report
	}{
		{"sound passes", sound, assertSound, ""},
		{"hung", &faultkit.Result{Calls: []*faultkit.Call{{ID: "c-1", Class: faultkit.ClassHung}}}, assertSound, "1 calls hung (first: c-1"},
		{"mismatched", &faultkit.Result{Calls: []*faultkit.Call{{ID: "c-1", Class: faultkit.ClassMismatched}}}, assertSound, "1 calls got an answer not their own"},
		{"duplicated", &faultkit.Result{Duplicated: []*faultkit.Call{{ID: "c-1", Executed: 2}}}, assertSound, "1 calls executed more than once (first: c-1 ×2)"},
		{"no errors", &faultkit.Result{Calls: []*faultkit.Call{ok("c-1", 0)}}, func(t testing.TB, r *faultkit.Result) { assertNoErrors(t, r, "here") }, ""},
		{"an error", sound, func(t testing.TB, r *faultkit.Result) { assertNoErrors(t, r, "here") }, "1 calls failed here: map[http_504:1] (first: c-2 http_504"},
		{"allowed kind", sound, func(t testing.TB, r *faultkit.Result) {
			assertKinds(t, r, "504s", func(k string) bool { return strings.HasPrefix(k, "http_504") })
		}, ""},
		{"kind refused", sound, func(t testing.TB, r *faultkit.Result) {
			assertKinds(t, r, "429s", func(k string) bool { return strings.HasPrefix(k, "http_429") })
		}, "1 calls failed with http_504, want 429s"},
		{"ok after", sound, func(t testing.TB, r *faultkit.Result) { assertOKAfter(t, r, t0.Add(time.Second), "the fault") }, ""},
		{"none ok after", sound, func(t testing.TB, r *faultkit.Result) { assertOKAfter(t, r, t0.Add(3*time.Second), "the fault") }, "no call succeeded after the fault"},
		{"an error is not a success", &faultkit.Result{Calls: []*faultkit.Call{ok("c-1", 0), failed("c-2", "http_504", 2*time.Second)}},
			func(t testing.TB, r *faultkit.Result) { assertOKAfter(t, r, t0.Add(time.Second), "the fault") }, "no call succeeded after the fault"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			tc.run(rec, tc.res)
			switch {
			case tc.want == "" && len(rec.errs) > 0:
				t.Errorf("reported %q, want nothing", rec.errs)
			case tc.want != "" && (len(rec.errs) != 1 || !strings.HasPrefix(rec.errs[0], tc.want)):
				t.Errorf("reported %q, want one report starting %q", rec.errs, tc.want)
			}
		})
	}
	if got := latestEnd(sound.Of(faultkit.ClassOK), t0); got != 2010*time.Millisecond {
		t.Errorf("latestEnd of the ok calls: %s, want 2.01s", got)
	}
	if got := len(sound.Of(faultkit.ClassError)); got != 1 {
		t.Errorf("%d error calls, want 1", got)
	}
}
