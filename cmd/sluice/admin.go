package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

const adminUsage = `Usage: sluice admin [flags] tunnels create|list|get|update|delete ...
       sluice admin [flags] keys create|list|revoke ...

Manages the tunnels and keys of a running sluice relay through its admin API
(relay.admin-listen-addr, loopback by default).

  tunnels create --name NAME [--description TEXT] [--auth-mode MODE] [--response-timeout 2m]
  tunnels list
  tunnels get TUNNEL_ID
  tunnels update TUNNEL_ID [--name NAME] [--description TEXT] [--auth-mode MODE] [--response-timeout D]
  tunnels delete TUNNEL_ID --confirm
  keys create --tunnel TUNNEL_ID --scope runtime|client --name NAME
  keys create --scope admin --name NAME
  keys list --tunnel TUNNEL_ID          (--scope admin: the admin keys)
  keys revoke KEY_ID --tunnel TUNNEL_ID (--scope admin: an admin key)

MODE is client-key (the default: MCP clients present a client key), oauth
(the MCP server checks OAuth tokens itself) or public (no check at all).
A new key is printed once; the relay keeps only its hash.

Flags:
  --admin-url URL   the relay's admin listener (env SLUICE_ADMIN_URL;
                    default http://127.0.0.1:8788)
  --admin-key REF   an admin key reference: env:NAME or file:/path (default:
                    the environment variable SLUICE_ADMIN_KEY holds the key)
  --json            print the admin API's JSON answers

Exit codes: 0 done, 1 the relay refused or could not be reached, 2 usage.
`

const defaultAdminURL = "http://127.0.0.1:8788"

// adminCmd is one `sluice admin` invocation.
type adminCmd struct {
	c      *cli
	url    string
	key    string
	json   bool
	client *http.Client
}

// adminFlags are every flag of every admin subcommand: each subcommand
// checks that it got only the ones it takes.
type adminFlags struct {
	fs                                          *pflag.FlagSet
	adminURL, adminKey                          string
	json, confirm                               bool
	name, description, authMode, timeout, scope string
	tunnel                                      string
}

func newAdminFlags(out io.Writer) *adminFlags {
	f := &adminFlags{fs: pflag.NewFlagSet("sluice admin", pflag.ContinueOnError)}
	f.fs.SetOutput(out)
	f.fs.Usage = func() {}
	f.fs.StringVar(&f.adminURL, "admin-url", "", "")
	f.fs.StringVar(&f.adminKey, "admin-key", "", "")
	f.fs.BoolVar(&f.json, "json", false, "")
	f.fs.BoolVar(&f.confirm, "confirm", false, "")
	f.fs.StringVar(&f.name, "name", "", "")
	f.fs.StringVar(&f.description, "description", "", "")
	f.fs.StringVar(&f.authMode, "auth-mode", "", "")
	f.fs.StringVar(&f.timeout, "response-timeout", "", "")
	f.fs.StringVar(&f.scope, "scope", "", "")
	f.fs.StringVar(&f.tunnel, "tunnel", "", "")
	return f
}

// usagef is a usageError (plugin.go): a mistake on the command line.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// admin serves `sluice admin …`.
func (c *cli) admin(ctx context.Context, args []string) int {
	f := newAdminFlags(c.stderr)
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(c.stdout, adminUsage)
			return exitOK
		}
		fmt.Fprintf(c.stderr, "sluice admin: %v\n", err)
		return exitConfig
	}
	pos := f.fs.Args()
	if len(pos) == 0 || pos[0] == "help" {
		fmt.Fprint(c.stdout, adminUsage)
		if len(pos) == 0 {
			return exitConfig
		}
		return exitOK
	}
	a, err := c.newAdminCmd(f)
	if err == nil {
		err = a.run(ctx, f, pos)
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "sluice admin: %v (sluice admin --help)\n", err)
		return exitConfig
	default:
		fmt.Fprintf(c.stderr, "sluice admin: %v\n", err)
		return exitFailure
	}
}

// newAdminCmd resolves the admin URL and key.
func (c *cli) newAdminCmd(f *adminFlags) (*adminCmd, error) {
	a := &adminCmd{c: c, json: f.json, client: &http.Client{Timeout: 30 * time.Second}}
	a.url = f.adminURL
	if a.url == "" {
		a.url, _ = c.env.lookup("SLUICE_ADMIN_URL")
	}
	if a.url == "" {
		a.url = defaultAdminURL
	}
	u, err := url.Parse(a.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--admin-url %q: want http://host:port", a.url)
	}
	a.url = strings.TrimSuffix(a.url, "/")
	switch {
	case f.adminKey != "":
		k, err := Secret(f.adminKey).resolve("--admin-key", c.env)
		if err != nil {
			return nil, usagef("%s", strings.TrimPrefix(err.Error(), "config: "))
		}
		a.key = k
	default:
		a.key, _ = c.env.lookup("SLUICE_ADMIN_KEY")
		if a.key == "" {
			return nil, usagef("no admin key: set SLUICE_ADMIN_KEY or --admin-key env:NAME|file:/path (the relay printed one at its first start)")
		}
	}
	return a, nil
}

// only refuses flags a subcommand does not take.
func (f *adminFlags) only(cmd string, allowed ...string) error {
	common := []string{"admin-url", "admin-key", "json"}
	var bad string
	f.fs.Visit(func(fl *pflag.Flag) {
		for _, a := range append(common, allowed...) {
			if fl.Name == a {
				return
			}
		}
		if bad == "" {
			bad = fl.Name
		}
	})
	if bad != "" {
		return usagef("%s: no flag --%s", cmd, bad)
	}
	return nil
}

func (a *adminCmd) run(ctx context.Context, f *adminFlags, pos []string) error {
	if len(pos) < 2 {
		return usagef("%s: want a subcommand", pos[0])
	}
	cmd := pos[0] + " " + pos[1]
	args := pos[2:]
	want := func(n int, what string) error {
		if len(args) != n {
			if n == 0 {
				return usagef("%s: unexpected argument %q", cmd, args[0])
			}
			return usagef("%s: want %s", cmd, what)
		}
		return nil
	}
	switch cmd {
	case "tunnels create":
		if err := errors.Join(want(0, ""), f.only(cmd, "name", "description", "auth-mode", "response-timeout")); err != nil {
			return err
		}
		if f.name == "" {
			return usagef("%s: --name is required", cmd)
		}
		return a.tunnelWrite(ctx, "POST", "/v1/tunnels", f, "created")
	case "tunnels list":
		if err := errors.Join(want(0, ""), f.only(cmd)); err != nil {
			return err
		}
		return a.listTunnels(ctx)
	case "tunnels get":
		if err := errors.Join(want(1, "a TUNNEL_ID"), f.only(cmd)); err != nil {
			return err
		}
		return a.showTunnel(ctx, "GET", "/v1/tunnels/"+url.PathEscape(args[0]), nil, "")
	case "tunnels update":
		if err := errors.Join(want(1, "a TUNNEL_ID"), f.only(cmd, "name", "description", "auth-mode", "response-timeout")); err != nil {
			return err
		}
		if f.fs.NFlag() == countSet(f.fs, "admin-url", "admin-key", "json") {
			return usagef("%s: nothing to change (--name, --description, --auth-mode, --response-timeout)", cmd)
		}
		return a.tunnelWrite(ctx, "POST", "/v1/tunnels/"+url.PathEscape(args[0]), f, "updated")
	case "tunnels delete":
		if err := errors.Join(want(1, "a TUNNEL_ID"), f.only(cmd, "confirm")); err != nil {
			return err
		}
		if !f.confirm {
			return usagef("%s: deleting a tunnel removes its keys and cuts its agents and clients off: add --confirm", cmd)
		}
		return a.showTunnel(ctx, "DELETE", "/v1/tunnels/"+url.PathEscape(args[0]), nil, "deleted")
	case "keys create":
		if err := errors.Join(want(0, ""), f.only(cmd, "tunnel", "scope", "name")); err != nil {
			return err
		}
		path, err := keysPath(cmd, f)
		if err != nil {
			return err
		}
		return a.createKey(ctx, path, f)
	case "keys list":
		if err := errors.Join(want(0, ""), f.only(cmd, "tunnel", "scope")); err != nil {
			return err
		}
		path, err := keysPath(cmd, f)
		if err != nil {
			return err
		}
		return a.listKeys(ctx, path)
	case "keys revoke":
		if err := errors.Join(want(1, "a KEY_ID"), f.only(cmd, "tunnel", "scope")); err != nil {
			return err
		}
		path, err := keysPath(cmd, f)
		if err != nil {
			return err
		}
		return a.revokeKey(ctx, path+"/"+url.PathEscape(args[0]))
	}
	msg := fmt.Sprintf("unknown command %q", cmd)
	all := []string{"tunnels create", "tunnels list", "tunnels get", "tunnels update", "tunnels delete", "keys create", "keys list", "keys revoke"}
	if s, ok := nearest(cmd, all); ok {
		msg += " (did you mean " + s + "?)"
	}
	return usagef("%s", msg)
}

func countSet(fs *pflag.FlagSet, names ...string) int {
	n := 0
	for _, name := range names {
		if fs.Changed(name) {
			n++
		}
	}
	return n
}

// keysPath is the admin API path of the keys --tunnel or --scope admin name.
func keysPath(cmd string, f *adminFlags) (string, error) {
	switch {
	case f.tunnel != "" && f.scope == "admin":
		return "", usagef("%s: admin keys belong to no tunnel: drop --tunnel", cmd)
	case f.tunnel != "":
		return "/v1/tunnels/" + url.PathEscape(f.tunnel) + "/keys", nil
	case f.scope == "admin":
		return "/v1/organization/admin_api_keys", nil
	}
	return "", usagef("%s: --tunnel TUNNEL_ID is required (or --scope admin for admin keys)", cmd)
}

// call makes one admin API request and decodes a 2xx answer into out; the
// raw answer is kept for --json.
func (a *adminCmd) call(ctx context.Context, method, path string, body any, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.url+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v (is the relay running, and its admin listener at %s?)", method, path, unwrapURLErr(err), a.url)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %v", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, apiFailure(method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("%s %s: the answer is not what an admin API sends: %v", method, path, err)
		}
	}
	return raw, nil
}

func unwrapURLErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// apiFailure turns an error answer into one line: status, message, code.
func apiFailure(method, path string, status int, raw []byte) error {
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Code    *string `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
		if e.Error.Code != nil && *e.Error.Code != "" {
			msg += " (" + *e.Error.Code + ")"
		}
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return fmt.Errorf("%s %s: %d %s: %s", method, path, status, http.StatusText(status), msg)
}

// tunnel is the admin API's tunnel object.
type tunnel struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	Description     string `json:"description"`
	AuthMode        string `json:"auth_mode"`
	ResponseTimeout string `json:"response_timeout"`
	ReadOnly        bool   `json:"read_only"`
	CreatedAt       int64  `json:"created_at"`
	AgentConnected  bool   `json:"agent_connected"`
}

func (a *adminCmd) tunnelWrite(ctx context.Context, method, path string, f *adminFlags, done string) error {
	body := map[string]string{}
	set := func(flag, field, v string) {
		if f.fs.Changed(flag) {
			body[field] = v
		}
	}
	set("name", "name", f.name)
	set("description", "description", f.description)
	set("auth-mode", "auth_mode", f.authMode)
	set("response-timeout", "response_timeout", f.timeout)
	return a.showTunnel(ctx, method, path, body, done)
}

func (a *adminCmd) showTunnel(ctx context.Context, method, path string, body any, done string) error {
	var t tunnel
	raw, err := a.call(ctx, method, path, body, &t)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(raw)
	}
	out := a.c.stdout
	if done != "" {
		fmt.Fprintf(out, "%s tunnel %s\n", done, t.ID)
		if done == "deleted" {
			return nil
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\n", t.ID)
	fmt.Fprintf(tw, "name\t%s\n", t.Name)
	fmt.Fprintf(tw, "description\t%s\n", t.Description)
	fmt.Fprintf(tw, "auth mode\t%s\n", t.AuthMode)
	fmt.Fprintf(tw, "response timeout\t%s\n", t.ResponseTimeout)
	fmt.Fprintf(tw, "source\t%s\n", source(t.ReadOnly))
	fmt.Fprintf(tw, "agent connected\t%v\n", t.AgentConnected)
	if t.CreatedAt != 0 {
		fmt.Fprintf(tw, "created\t%s\n", time.Unix(t.CreatedAt, 0).UTC().Format(time.RFC3339))
	}
	_ = tw.Flush()
	if done == "created" {
		fmt.Fprintf(out, "\nnext: sluice admin keys create --tunnel %s --scope runtime --name agent\n", t.ID)
	}
	return nil
}

func source(readOnly bool) string {
	if readOnly {
		return "config file (read-only here)"
	}
	return "admin API"
}

func (a *adminCmd) listTunnels(ctx context.Context) error {
	var l struct {
		Tunnels []tunnel `json:"tunnels"`
	}
	raw, err := a.call(ctx, "GET", "/v1/tunnels", nil, &l)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(raw)
	}
	tw := tabwriter.NewWriter(a.c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tAUTH\tAGENT\tSOURCE")
	for _, t := range l.Tunnels {
		agent := "-"
		if t.AgentConnected {
			agent = "connected"
		}
		src := "api"
		if t.ReadOnly {
			src = "config"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.AuthMode, agent, src)
	}
	return tw.Flush()
}

// key is the admin API's key object.
type key struct {
	ID            string `json:"id"`
	TunnelID      string `json:"tunnel_id"`
	Scope         string `json:"scope"`
	Name          string `json:"name"`
	RedactedValue string `json:"redacted_value"`
	Value         string `json:"value"`
	CreatedAt     int64  `json:"created_at"`
	RevokedAt     *int64 `json:"revoked_at"`
	ReadOnly      bool   `json:"read_only"`
}

func (a *adminCmd) createKey(ctx context.Context, path string, f *adminFlags) error {
	body := map[string]string{"name": f.name}
	if f.scope != "" {
		body["scope"] = f.scope
	}
	var k key
	raw, err := a.call(ctx, "POST", path, body, &k)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(raw)
	}
	owner := "the relay"
	if k.TunnelID != "" {
		owner = "tunnel " + k.TunnelID
	}
	fmt.Fprintf(a.c.stdout, "created %s key %s (%s) for %s:\n\n  %s\n\nIt is shown this once; the relay keeps only its hash.\n", k.Scope, k.ID, k.Name, owner, k.Value)
	switch k.Scope {
	case "runtime":
		fmt.Fprintf(a.c.stdout, "Run the agent with it: CONTROL_PLANE_API_KEY=<the key> sluice run --control-plane.tunnel-id %s ...\n", k.TunnelID)
	case "client":
		fmt.Fprintf(a.c.stdout, "MCP clients send it as Authorization: Bearer <the key>; they are known as %q.\n", k.Name)
	}
	return nil
}

func (a *adminCmd) listKeys(ctx context.Context, path string) error {
	var l struct {
		Data []key `json:"data"`
	}
	raw, err := a.call(ctx, "GET", path, nil, &l)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(raw)
	}
	tw := tabwriter.NewWriter(a.c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSCOPE\tNAME\tKEY\tCREATED\tSTATE")
	for _, k := range l.Data {
		created, state, val := "-", "active", k.RedactedValue
		if k.CreatedAt != 0 {
			created = time.Unix(k.CreatedAt, 0).UTC().Format(time.RFC3339)
		}
		if k.RevokedAt != nil {
			state = "revoked " + time.Unix(*k.RevokedAt, 0).UTC().Format(time.RFC3339)
		}
		if k.ReadOnly {
			state, val = "config file (read-only)", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Scope, k.Name, val, created, state)
	}
	return tw.Flush()
}

func (a *adminCmd) revokeKey(ctx context.Context, path string) error {
	var d struct {
		ID string `json:"id"`
	}
	raw, err := a.call(ctx, "DELETE", path, nil, &d)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(raw)
	}
	fmt.Fprintf(a.c.stdout, "revoked key %s: it stops working on every replica within a second\n", d.ID)
	return nil
}

func (a *adminCmd) printJSON(raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		_, err = a.c.stdout.Write(append(raw, '\n'))
		return err
	}
	b.WriteByte('\n')
	_, err := a.c.stdout.Write(b.Bytes())
	return err
}
