package engine

import "testing"

func TestDecision(t *testing.T) {
	for _, tc := range []struct {
		name                string
		outcomes            []Outcome
		wantPlugin, wantVer string
	}{
		{"nothing happened", []Outcome{{Action: Continue}, {Action: Continue}}, "", ""},
		{"a mask", []Outcome{{Action: Continue}, {Action: Continue, Changed: "redact"}}, "redact", "replace"},
		{"the last change", []Outcome{{Action: Continue, Changed: "headers"}, {Action: Continue, Changed: "redact"}}, "redact", "replace"},
		{"a verdict beats a change", []Outcome{{Action: Continue, Changed: "redact"}, {Action: Reject, Stage: "toolguard"}}, "toolguard", "reject"},
		{"the first verdict stays", []Outcome{{Action: Reject, Stage: "toolguard"}, {Action: Continue, Changed: "redact"}, {Action: Drop, Stage: "x"}}, "toolguard", "reject"},
		{"a failure", []Outcome{{Action: Reject, Stage: "loop", Failed: true}}, "loop", "failed"},
	} {
		var d Decision
		for _, o := range tc.outcomes {
			d.Note(o)
		}
		if d.Plugin != tc.wantPlugin || d.Verdict != tc.wantVer {
			t.Errorf("%s: %q %q, want %q %q", tc.name, d.Plugin, d.Verdict, tc.wantPlugin, tc.wantVer)
		}
	}
}
