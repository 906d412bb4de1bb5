// Package calc is the logic of the cli-binding example: a binding plugin
// that exposes line-oriented command-line programs as MCP tools. The plugin
// never chooses what runs: it names a command ("calc", "count") and the
// operator's config says which program that is, with which arguments.
//
//   - calculate: one expression in, one line out, from a calculator the host
//     keeps running (bc -lq in the example config: a line command).
//   - count_words: the text on stdin, the counts from stdout, a fresh
//     process per call (wc in the example config: a run command).
//
// The package has no build tag: its logic is tested natively with
// sdk/sdktest; main.go registers it in the Wasm module.
package calc

import (
	"errors"
	"strconv"
	"strings"

	"github.com/sluicemcp/sluice/sdk/binding"
)

// Command names the operator binds to programs.
const (
	CalcCommand  = "calc"
	CountCommand = "count"
)

// maxExpression bounds an expression's length.
const maxExpression = 1024

// Plugin returns the binding plugin.
func Plugin() binding.Plugin {
	return binding.Plugin{
		Name:         "cli-binding",
		Version:      "1.0.0",
		Title:        "Command-line tools",
		Instructions: "calculate evaluates arithmetic with arbitrary precision (functions s, c, a, l, e, sqrt; ^ is power); count_words counts lines, words and bytes of a text.",
		Tools: []binding.Tool{
			{
				Name:        "calculate",
				Description: "Evaluate an arithmetic expression with arbitrary precision, e.g. 2^100 or sqrt(2)*3.",
				InputSchema: []byte(`{"type":"object","properties":{"expression":{"type":"string","description":"digits, + - * / ^ %, parentheses, and the functions s c a l e sqrt"}},"required":["expression"]}`),
				Annotations: []byte(`{"readOnlyHint":true}`),
				Handler:     calculate,
			},
			{
				Name:        "count_words",
				Description: "Count the lines, words and bytes of a text.",
				InputSchema: []byte(`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`),
				Annotations: []byte(`{"readOnlyHint":true}`),
				Handler:     countWords,
			},
		},
	}
}

// CheckExpression accepts only what makes a line-oriented calculator answer
// exactly one line: arithmetic, no assignment, no statement separator, no
// line break, balanced parentheses.
func CheckExpression(e string) error {
	e = strings.TrimSpace(e)
	switch {
	case e == "":
		return errors.New("empty expression")
	case len(e) > maxExpression:
		return errors.New("expression too long")
	}
	depth := 0
	for _, r := range e {
		switch {
		case r >= '0' && r <= '9', r == '.', r == ' ', r == '+', r == '-', r == '*', r == '/', r == '^', r == '%', r == ',':
		case r == '(':
			depth++
		case r == ')':
			depth--
			if depth < 0 {
				return errors.New("unbalanced parentheses")
			}
		case strings.ContainsRune("sclaeqrt", r): // s c a l e sqrt
		default:
			return errors.New("unsupported character " + string(r))
		}
	}
	if depth != 0 {
		return errors.New("unbalanced parentheses")
	}
	return nil
}

func calculate(c *binding.Call, args binding.Args) binding.ToolResult {
	expr, ok := args.String("expression")
	if !ok {
		return binding.ErrorResult("expression must be a string")
	}
	if err := CheckExpression(expr); err != nil {
		return binding.ErrorResult(err.Error())
	}
	out, err := binding.Exchange(CalcCommand, []byte(strings.TrimSpace(expr)))
	if err != nil {
		return binding.ErrorResult(err.Error())
	}
	line := strings.TrimSpace(string(out))
	// bc reports errors on the same line stream when stderr is merged.
	if strings.HasPrefix(line, "Runtime error") || strings.HasPrefix(line, "(standard_in)") || strings.Contains(line, "error") {
		return binding.ErrorResult(line)
	}
	return binding.TextResult(line)
}

func countWords(c *binding.Call, args binding.Args) binding.ToolResult {
	text, ok := args.String("text")
	if !ok {
		return binding.ErrorResult("text must be a string")
	}
	out, err := binding.Exchange(CountCommand, []byte(text))
	if err != nil {
		return binding.ErrorResult(err.Error())
	}
	f := strings.Fields(string(out))
	n := make([]int, 3)
	for i := range n {
		if i >= len(f) {
			return binding.ErrorResult("unexpected output from the counter: " + strings.TrimSpace(string(out)))
		}
		v, err := strconv.Atoi(f[i])
		if err != nil {
			return binding.ErrorResult("unexpected output from the counter: " + strings.TrimSpace(string(out)))
		}
		n[i] = v
	}
	b := append([]byte(`{"lines":`), strconv.Itoa(n[0])...)
	b = append(append(b, `,"words":`...), strconv.Itoa(n[1])...)
	b = append(append(b, `,"bytes":`...), strconv.Itoa(n[2])...)
	return binding.JSONResult(append(b, '}'))
}
