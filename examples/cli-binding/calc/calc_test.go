package calc_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/examples/cli-binding/calc"
	"github.com/sluicemcp/sluice/sdk/binding"
	"github.com/sluicemcp/sluice/sdk/sdktest"
)

func TestCheckExpression(t *testing.T) {
	for _, ok := range []string{"2+2", " sqrt(2) * 3 ", "2^100 % 7", "s(1)+c(0)", "(1+(2*3))/4.5"} {
		if err := calc.CheckExpression(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "x=5", "1;2", "1\n2", "(1+2", "1)+(2", "quit", `print "hi"`, strings.Repeat("1+", 600) + "1"} {
		if err := calc.CheckExpression(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func toolCall(t *testing.T, env *sdktest.BindingEnv, name, args string) (string, bool) {
	t.Helper()
	rep, err := env.Call(calc.Plugin(), sdktest.Request{Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + name + `","arguments":` + args + `}}`)})
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Result struct {
			Content []struct{ Text string }
			IsError bool
		}
	}
	if err := json.Unmarshal(rep.Body, &r); err != nil || len(r.Result.Content) == 0 {
		t.Fatalf("%s", rep.Body)
	}
	return r.Result.Content[0].Text, r.Result.IsError
}

func TestToolsUseTheNamedCommands(t *testing.T) {
	var got []string
	env := &sdktest.BindingEnv{Command: func(name string, in []byte) ([]byte, error) {
		got = append(got, name+":"+string(in))
		switch name {
		case calc.CalcCommand:
			if string(in) == "1/0" {
				return []byte("Runtime error (func=(main), adr=3): Divide by zero"), nil
			}
			return []byte("4"), nil
		case calc.CountCommand:
			return []byte("      2       5      24\n"), nil
		}
		return nil, &binding.HostError{Code: -1, Message: "not configured"}
	}}
	if text, isErr := toolCall(t, env, "calculate", `{"expression":" 2+2 "}`); isErr || text != "4" {
		t.Fatalf("calculate: %q %v", text, isErr)
	}
	if text, isErr := toolCall(t, env, "calculate", `{"expression":"1/0"}`); !isErr || !strings.Contains(text, "Divide by zero") {
		t.Fatalf("bc error: %q %v", text, isErr)
	}
	if text, isErr := toolCall(t, env, "calculate", `{"expression":"1=1"}`); !isErr || !strings.Contains(text, "unsupported character =") {
		t.Fatalf("refused before reaching the program: %q %v", text, isErr)
	}
	if text, isErr := toolCall(t, env, "count_words", `{"text":"one two three\nfour five\n"}`); isErr || text != `{"lines":2,"words":5,"bytes":24}` {
		t.Fatalf("count_words: %q %v", text, isErr)
	}
	if strings.Join(got, "|") != "calc:2+2|calc:1/0|count:one two three\nfour five\n" {
		t.Fatalf("exchanges: %q", got)
	}
	denied := &sdktest.BindingEnv{}
	if text, isErr := toolCall(t, denied, "calculate", `{"expression":"1"}`); !isErr || !strings.Contains(text, "denied") {
		t.Fatalf("without commands: %q", text)
	}
}
