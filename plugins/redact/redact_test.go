package redact_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/plugins/redact"
	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/sdktest"
)

// toolResult wraps text as the text content of a tools/call result.
func toolResult(text string) []byte {
	t, _ := json.Marshal(text)
	return []byte(`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":` + string(t) + `}],"isError":false}}`)
}

// resultText extracts the text back.
func resultText(t *testing.T, b []byte) string {
	t.Helper()
	var v struct {
		Result struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"result"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, b)
	}
	return v.Result.Content[0].Text
}

func mustNew(t testing.TB, c redact.Config) *redact.Redactor {
	t.Helper()
	r, err := redact.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var (
	googleKey = "AIza" + strings.Repeat("Ab1_-", 7)
	jwtHeader = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" // {"alg":"HS256","typ":"JWT"}
	jwtBody   = "eyJzdWIiOiIxMjM0NTY3ODkwIn0"          // {"sub":"1234567890"}
	jwtSig    = "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	validJWT  = jwtHeader + "." + jwtBody + "." + jwtSig
)

func TestDetectors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// AWS
		{"aws akia", "key AKIAIOSFODNN7EXAMPLE here", "key [REDACTED:aws_access_key] here"},
		{"aws asia after =", "id=ASIAIOSFODNN7EXAMPLE", "id=[REDACTED:aws_access_key]"},
		{"aws too short", "AKIAIOSFODNN7EXAMP", ""},
		{"aws too long", "AKIAIOSFODNN7EXAMPLEX", ""},
		{"aws inside word", "xAKIAIOSFODNN7EXAMPLE", ""},
		{"aws lowercase tail", "AKIAiosfodnn7example", ""},
		// OpenAI
		{"openai", "use sk-abcdefghijklmnopqrstuvwx please", "use [REDACTED:openai_key] please"},
		{"openai proj", "sk-proj-abc_DEF-ghijklmnopqrstuvwxyz0123", "[REDACTED:openai_key]"},
		{"openai prose", "run task-sk-list and sk-learn", ""},
		{"openai short", "sk-1234", ""},
		// GitHub
		{"github ghp", "token ghp_0123456789abcdefghijklmnopqrstuvwxyz", "token [REDACTED:github_token]"},
		{"github gho", "gho_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", "[REDACTED:github_token]"},
		{"github pat", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "[REDACTED:github_token]"},
		{"github short", "ghp_short and ghost_token", ""},
		// Slack
		{"slack bot", "xoxb-1234567890-abcdefghij", "[REDACTED:slack_token]"},
		{"slack near", "xoxo-hugs xoxb-123", ""},
		// Google
		{"google", "k=" + googleKey, "k=[REDACTED:google_api_key]"},
		{"google short", "AIzaSyShort", ""},
		// Stripe
		{"stripe live", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[REDACTED:stripe_key]"},
		{"stripe restricted", "rk_live_4eC39HqLyjWDarjtT1zdp7dc.", "[REDACTED:stripe_key]."},
		{"stripe test key kept", "sk_test_4eC39HqLyjWDarjtT1zdp7dc", ""},
		// Bearer
		{"bearer", "Authorization: Bearer abcdef0123456789.xyz_-~+/==", "Authorization: Bearer [REDACTED:bearer_token]"},
		{"bearer prose", "Bearer of bad news", ""},
		// PEM
		{"pem", "k:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc=\n-----END RSA PRIVATE KEY-----\nafter", "k:\n[REDACTED:private_key]\nafter"},
		{"pem unterminated", "-----BEGIN PRIVATE KEY-----\nMIIEv", "[REDACTED:private_key]"},
		{"pem certificate kept", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", ""},
		{"pem public kept", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", ""},
		// JWT
		{"jwt", "t=" + validJWT + " ok", "t=[REDACTED:jwt] ok"},
		{"jwt std base64 sig", validJWT + "+/x", ""},
		{"jwt bad segment length", jwtHeader + "." + jwtBody + ".abcde", ""},
		{"jwt header not object", "eyJhbGci." + jwtBody + "." + jwtSig, ""},
		{"jwt two segments", jwtHeader + "." + jwtBody, ""},
		// Connection strings
		{"conn postgres", "dsn postgres://admin:s3cr3t!@db.internal:5432/app", "dsn postgres://admin:[REDACTED:connection_string]@db.internal:5432/app"},
		{"conn redis", "redis://:hunter2@cache:6379", "redis://:[REDACTED:connection_string]@cache:6379"},
		{"conn no password", "https://user@example.com/x and http://example.com/a:b@c", ""},
		// Email
		{"email", "mail jane.doe+tag@example.co.uk now", "mail [REDACTED:email] now"},
		{"email after escape", "\njane@example.com\t", "\n[REDACTED:email]\t"},
		{"email near", "@username user@localhost a@b.c @Override x@1.2.3.4", ""},
		// Phone
		{"phone intl", "call +1 415-555-0132 now", "call [REDACTED:phone] now"},
		{"phone uk", "+44 20 7946 0958", "[REDACTED:phone]"},
		{"phone parens", "(415) 555-0132", "[REDACTED:phone]"},
		{"phone dashes", "at 415-555-0132.", "at [REDACTED:phone]."},
		{"phone leading one", "1-415-555-0132", "[REDACTED:phone]"},
		{"phone dots", "415.555.0132", "[REDACTED:phone]"},
		{"phone leading one spaced", "dial 1 415 555 0132", "dial [REDACTED:phone]"},
		{"phone near", "2024-01-15 10:30, 192.168.100.200, v1.2.3, +12, 415-555-01324, 12345678", ""},
		// Cards
		{"card spaced", "card 4111 1111 1111 1111 exp", "card [REDACTED:card] exp"},
		{"card dashed", "4111-1111-1111-1111", "[REDACTED:card]"},
		{"card plain", "4111111111111111", "[REDACTED:card]"},
		{"card amex", "378282246310005", "[REDACTED:card]"},
		{"card amex grouped", "amex 3782 822463 10005.", "amex [REDACTED:card]."},
		{"card near", "2024-05-01T10:30:00Z, 4111-11-1111, 1 (415), y=1 (x), 3.14159", ""},
		{"card luhn fail", "4111111111111112 and 4111 1111 1111 1112", ""},
		{"card decimal", "pi=3.1415926535897932 x=4111111111111111.5", ""},
		// IBAN
		{"iban spaced", "IBAN DE89 3704 0044 0532 0130 00.", "IBAN [REDACTED:iban]."},
		{"iban compact", "GB82WEST12345698765432", "[REDACTED:iban]"},
		{"iban bad check", "DE89 3704 0044 0532 0130 01 and GB82WEST12345698765433", ""},
		// AWS secret access keys: only with their keyword
		{"aws secret yaml", "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nnext", "aws_secret_access_key: [REDACTED:aws_secret_key]\nnext"},
		{"aws secret env", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_key]"},
		{"aws secret quoted", `SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"`, `SecretAccessKey: "[REDACTED:aws_secret_key]"`},
		{"aws secret single quoted", "aws_secret_key='wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'", "aws_secret_key='[REDACTED:aws_secret_key]'"},
		{"aws secret no keyword", "checksum: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""},
		{"aws secret 39 chars", "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE", ""},
		{"aws secret 41 chars", "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYS", ""},
		{"aws public key kept", "public_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""},
		// Mixed and escapes
		{"several", "a@example.com, AKIAIOSFODNN7EXAMPLE", "[REDACTED:email], [REDACTED:aws_access_key]"},
		{"quotes around", `"AKIAIOSFODNN7EXAMPLE"`, `"[REDACTED:aws_access_key]"`},
		{"plain prose", "The quick brown fox jumps over the lazy dog 42 times in 2024.", ""},
	}
	r := mustNew(t, redact.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := toolResult(tt.in)
			out, o := r.Redact(in)
			if tt.want == "" {
				if out != nil || o.Masked != 0 {
					t.Fatalf("redacted a near-miss: %s", resultText(t, out))
				}
				return
			}
			if out == nil {
				t.Fatalf("nothing redacted in %q", tt.in)
			}
			if got := resultText(t, out); got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAWSSecretMember(t *testing.T) {
	r := mustNew(t, redact.Config{})
	in := []byte(`{"jsonrpc":"2.0","id":3,"result":{"structuredContent":{"aws_secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY","other":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}}`)
	out, o := r.Redact(in)
	want := `{"jsonrpc":"2.0","id":3,"result":{"structuredContent":{"aws_secret_access_key":"[REDACTED:aws_secret_key]","other":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}}`
	if string(out) != want || o.Masked != 1 {
		t.Fatalf("got %s (%d masked)\nwant %s", out, o.Masked, want)
	}
}

func TestStructureKept(t *testing.T) {
	r := mustNew(t, redact.Config{})
	tests := []struct{ name, in, want string }{
		{"id and method untouched",
			`{"id":"AKIAIOSFODNN7EXAMPLE","jsonrpc":"2.0","method":"tools/call","params":{"name":"q","arguments":{"key":"AKIAIOSFODNN7EXAMPLE","n":4111111111111111}}}`,
			`{"id":"AKIAIOSFODNN7EXAMPLE","jsonrpc":"2.0","method":"tools/call","params":{"name":"q","arguments":{"key":"[REDACTED:aws_access_key]","n":4111111111111111}}}`},
		{"whitespace and order kept",
			"{ \"result\" : { \"z\":1, \"a\" : [ \"x@example.com\" , true , null ] } ,\n \"id\" : 0, \"jsonrpc\":\"2.0\" }",
			"{ \"result\" : { \"z\":1, \"a\" : [ \"[REDACTED:email]\" , true , null ] } ,\n \"id\" : 0, \"jsonrpc\":\"2.0\" }"},
		{"keys not edited", `{"jsonrpc":"2.0","id":1,"result":{"a@example.com":"a@example.com"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"a@example.com":"[REDACTED:email]"}}`},
		{"protocol tokens untouched", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"415-555-0132","progressToken":"a@example.com"}}`, ""},
		{"unicode escape split is a miss", `{"jsonrpc":"2.0","id":1,"result":{"t":"\u0041KIAIOSFODNN7EXAMPLE \u00e9x@example.com"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"t":"\u0041KIAIOSFODNN7EXAMPLE \u00e9[REDACTED:email]"}}`},
		{"escaped quote before secret", `{"jsonrpc":"2.0","id":1,"result":{"t":"say \"AKIAIOSFODNN7EXAMPLE\\\" ok"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"t":"say \"[REDACTED:aws_access_key]\\\" ok"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _ := r.Redact([]byte(tt.in))
			if tt.want == "" {
				if out != nil {
					t.Fatalf("changed: %s", out)
				}
				return
			}
			if string(out) != tt.want {
				t.Fatalf("got  %s\nwant %s", out, tt.want)
			}
			if !json.Valid(out) {
				t.Fatal("invalid JSON")
			}
		})
	}
}

func TestConfig(t *testing.T) {
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"email":"a@example.com","key":"AKIAIOSFODNN7EXAMPLE","note":"ticket CORP-12345678 done"}},"meta":{"x":"b@example.com"}}`)
	tests := []struct {
		name   string
		cfg    string
		want   string // "" = unchanged
		reject string
	}{
		{"default", `{}`, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"email":"[REDACTED:email]","key":"[REDACTED:aws_access_key]","note":"ticket CORP-12345678 done"}},"meta":{"x":"[REDACTED:email]"}}`, ""},
		{"disable email", `{"disable":["email"]}`, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"email":"a@example.com","key":"[REDACTED:aws_access_key]","note":"ticket CORP-12345678 done"}},"meta":{"x":"b@example.com"}}`, ""},
		{"only aws", `{"only":["aws_access_key"],"mask":"last4"}`, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"email":"a@example.com","key":"****************MPLE","note":"ticket CORP-12345678 done"}},"meta":{"x":"b@example.com"}}`, ""},
		{"fixed mask", `{"only":["email"],"mask":"fixed","mask_text":"<\"gone\">"}`, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"email":"<\"gone\">","key":"AKIAIOSFODNN7EXAMPLE","note":"ticket CORP-12345678 done"}},"meta":{"x":"<\"gone\">"}}`, ""},
		{"paths", `{"paths":["params.arguments"],"only":["email"]}`, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"email":"[REDACTED:email]","key":"AKIAIOSFODNN7EXAMPLE","note":"ticket CORP-12345678 done"}},"meta":{"x":"b@example.com"}}`, ""},
		{"path wildcard", `{"paths":["*.x"],"only":["email"]}`, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"email":"a@example.com","key":"AKIAIOSFODNN7EXAMPLE","note":"ticket CORP-12345678 done"}},"meta":{"x":"[REDACTED:email]"}}`, ""},
		{"reject aws", `{"actions":{"aws_access_key":"reject"}}`, "", "aws_access_key"},
		{"custom", `{"only":["iban"],"custom":[{"name":"ticket","pattern":"CORP-[0-9]{8}"}]}`, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"email":"a@example.com","key":"AKIAIOSFODNN7EXAMPLE","note":"ticket [REDACTED:ticket] done"}},"meta":{"x":"b@example.com"}}`, ""},
		{"custom reject", `{"custom":[{"name":"ticket","prefix":"CORP-","pattern":"CORP-\\d+","action":"reject"}]}`, "", "ticket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := redact.ParseConfig([]byte(tt.cfg))
			if err != nil {
				t.Fatal(err)
			}
			r := mustNew(t, c)
			out, o := r.Redact(body)
			if o.Rejected != tt.reject {
				t.Fatalf("rejected %q, want %q", o.Rejected, tt.reject)
			}
			if tt.reject != "" {
				return
			}
			if string(out) != tt.want {
				t.Fatalf("got  %s\nwant %s", out, tt.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []string{
		`{"disable":["nope"]}`, `{"mask":"blur"}`, `{"action":"drop"}`, `{"typo":1}`,
		`{"custom":[{"name":"x","pattern":"[a-z]+"}]}`, `{"custom":[{"name":"x","pattern":"(("}]}`,
		`{"custom":[{"pattern":"abc"}]}`, `{"actions":{"email":"shout"}}`, `{"paths":[""]}`,
	} {
		t.Run(cfg, func(t *testing.T) {
			c, err := redact.ParseConfig([]byte(cfg))
			if err == nil {
				_, err = redact.New(c)
			}
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestPluginThroughSDK(t *testing.T) {
	p := redact.Plugin()
	secret := toolResult("key AKIAIOSFODNN7EXAMPLE")
	tests := []struct {
		name   string
		cfg    any
		msg    sdk.Message
		action sdk.Action
	}{
		{"clean continues", nil, sdk.Message{Hook: sdk.HookResponse, Method: "tools/call", Body: toolResult("hello")}, sdk.ActionContinue},
		{"secret replaced", nil, sdk.Message{Hook: sdk.HookResponse, Method: "tools/call", Body: secret}, sdk.ActionReplace},
		{"method not covered", map[string]any{"methods": []string{"resources/*"}}, sdk.Message{Hook: sdk.HookResponse, Method: "tools/call", Body: secret}, sdk.ActionContinue},
		{"method glob covered", map[string]any{"methods": []string{"tools/*"}}, sdk.Message{Hook: sdk.HookResponse, Method: "tools/call", Body: secret}, sdk.ActionReplace},
		{"reject", map[string]any{"action": "reject", "reject_status": 403}, sdk.Message{Method: "tools/call", Body: secret}, sdk.ActionReject},
		{"bad config fails closed", map[string]any{"mask": "nope"}, sdk.Message{Method: "tools/call", Body: toolResult("hello")}, sdk.ActionReject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := sdktest.MustEnv(tt.cfg).Run(p, tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != tt.action {
				t.Fatalf("action %v, want %v (%s)", res.Action, tt.action, res.Body)
			}
			if res.Action == sdk.ActionReplace && bytes.Contains(res.Body, []byte("AKIA")) {
				t.Fatalf("secret left: %s", res.Body)
			}
			if res.Action == sdk.ActionReject && bytes.Contains(res.Body, []byte("AKIA")) {
				t.Fatalf("reject leaks the secret: %s", res.Body)
			}
		})
	}
}

func TestCleanMessageAllocatesNothing(t *testing.T) {
	r := mustNew(t, redact.Config{})
	body := benchBody(16<<10, false)
	r.Redact(body) // warm the reusable buffers
	if n := testing.AllocsPerRun(20, func() { r.Redact(body) }); n != 0 {
		t.Fatalf("%v allocations per clean message", n)
	}
}

func FuzzRedact(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":"x","result":{"t":"AKIAIOSFODNN7EXAMPLE a@b.co 4111 1111 1111 1111"}}`))
	f.Add(toolResult("-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----"))
	f.Add(toolResult("postgres://u:p@h \u00e9 \\ \"" + validJWT))
	f.Add([]byte(`{"id":1,"a":["\u0041KIA","\\u0041",{"b":"+1 415 555 0132"}]}`))
	r := mustNew(f, redact.Config{Custom: []redact.CustomRule{{Name: "c", Pattern: `ab[^x]{0,8}`, MaxLen: 12}}})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _ := r.Redact(in)
		if out == nil || !json.Valid(in) {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("valid JSON in, invalid out:\n in %s\nout %s", in, out)
		}
		var a, b map[string]json.RawMessage
		if json.Unmarshal(in, &a) == nil {
			if err := json.Unmarshal(out, &b); err != nil {
				t.Fatalf("object became non-object: %s", out)
			}
			if !bytes.Equal(a["id"], b["id"]) {
				t.Fatalf("id changed: %s -> %s", a["id"], b["id"])
			}
			if len(a) != len(b) {
				t.Fatalf("members changed")
			}
		}
	})
}

// benchBody builds a tools/call result of about size bytes: prose, numbers,
// URLs and code, with (dirty) or without secrets.
func benchBody(size int, dirty bool) []byte {
	var sb strings.Builder
	chunks := []string{
		"The deployment of service api-gateway finished at 2024-05-01T10:30:00Z with 3 replicas. ",
		"See https://docs.example.com/guide/setup?ref=sidebar#install for details; version v1.2.3. ",
		"func main() { fmt.Println(\"hello\", 42, 3.14159) } // returns {\"ok\": true}\n",
		"Order #12345 shipped to warehouse B-7 (zone 4); tracking ABC123XYZ, weight 12.5 kg.\t",
		"User alice@ requested tasks: task-sk-list, build, deploy. Latency p99=187ms, errors=0.\n",
	}
	secrets := []string{
		"key AKIAIOSFODNN7EXAMPLE ", "mail bob@example.org ", "card 4111 1111 1111 1111 ", "call +1 415-555-0132 ",
	}
	for i := 0; sb.Len() < size-100; i++ {
		sb.WriteString(chunks[i%len(chunks)])
		if dirty && i%20 == 0 {
			sb.WriteString(secrets[(i/20)%len(secrets)])
		}
	}
	return toolResult(sb.String()[:max(0, size-100)])
}

func BenchmarkRedact(b *testing.B) {
	r := mustNew(b, redact.Config{})
	for _, dirty := range []bool{false, true} {
		for _, size := range []int{1 << 10, 16 << 10, 256 << 10, 1 << 20} {
			body := benchBody(size, dirty)
			name := fmt.Sprintf("clean/%dKiB", size>>10)
			if dirty {
				name = fmt.Sprintf("dirty/%dKiB", size>>10)
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					r.Redact(body)
				}
			})
		}
	}
}
