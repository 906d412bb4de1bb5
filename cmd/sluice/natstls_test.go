package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/sluicemcp/sluice/engine/enginetest"
)

// testCA is a certificate authority for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: t.TempDir()}
	writePEM(t, ca.path("ca.pem"), "CERTIFICATE", der)
	return ca
}

func (ca *testCA) path(name string) string { return filepath.Join(ca.dir, name) }

// issue writes a certificate signed by ca (for 127.0.0.1 when server) and
// its key, and returns their paths.
func (ca *testCA) issue(t *testing.T, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = ca.path(name+".pem"), ca.path(name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// natsOperator is a NATS decentralized-auth setup: an operator, a system
// account and an account with JetStream, and a user of that account whose
// credentials file the relay is given.
type natsOperator struct {
	operatorJWT, sysPub, sysJWT, accPub, accJWT string
	creds                                       []byte
	seed                                        string // the user's nkey seed (a secret)
}

func newNATSOperator(t *testing.T) *natsOperator {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	op, err := nkeys.CreateOperator()
	must(err)
	opPub, _ := op.PublicKey()
	o := &natsOperator{}
	o.operatorJWT, err = jwt.NewOperatorClaims(opPub).Encode(op)
	must(err)
	account := func(name string, js bool) (string, string, nkeys.KeyPair) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, _ := kp.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		tok, err := ac.Encode(op)
		must(err)
		return pub, tok, kp
	}
	o.sysPub, o.sysJWT, _ = account("SYS", false)
	var acc nkeys.KeyPair
	o.accPub, o.accJWT, acc = account("SLUICE", true)
	user, err := nkeys.CreateUser()
	must(err)
	upub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = "sluice-relay"
	utok, err := uc.Encode(acc)
	must(err)
	seed, _ := user.Seed()
	o.seed = string(seed)
	o.creds, err = jwt.FormatUserConfig(utok, seed)
	must(err)
	return o
}

// startNATSServer runs the nats-server .ci/deps.sh installs with conf (a
// configuration file's body, %s = the store directory) on loopback, until
// the test ends (stopped by its PID). It returns once the server's
// JetStream is healthy.
func startNATSServer(t *testing.T, conf string, monitor string) {
	t.Helper()
	bin := filepath.Join(enginetest.ToolsDir(), "bin", "nats-server")
	enginetest.RequireFiles(t, bin)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(conf, filepath.Join(dir, "js"))), 0o600); err != nil {
		t.Fatal(err)
	}
	var out enginetest.SyncBuffer
	cmd := exec.Command(bin, "-c", cfgFile)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nats-server:\n%s", out.String())
		}
	})
	enginetest.WaitFor(t, "nats-server ready", func() bool {
		resp, err := http.Get("http://" + monitor + "/healthz?js-enabled-only=true")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// TestRelayJoinsNATSOverTLSWithCredentials: `sluice relay` joins a real
// nats-server that demands TLS with a client certificate and decentralized
// (JWT) authentication, given relay.nats.credentials as a file: reference
// and relay.nats.tls; its tunnel store and work queue live there.
func TestRelayJoinsNATSOverTLSWithCredentials(t *testing.T) {
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue(t, "nats", true)
	cliCert, cliKey := ca.issue(t, "relay", false)
	op := newNATSOperator(t)
	opFile := filepath.Join(ca.dir, "operator.jwt")
	if err := os.WriteFile(opFile, []byte(op.operatorJWT), 0o600); err != nil {
		t.Fatal(err)
	}
	natsAddr, monitor := freeAddr(t), freeAddr(t)
	_, natsPort, _ := net.SplitHostPort(natsAddr)
	_, monPort, _ := net.SplitHostPort(monitor)
	startNATSServer(t, "listen: 127.0.0.1:"+natsPort+"\nhttp: 127.0.0.1:"+monPort+"\n"+
		"jetstream { store_dir: %q }\n"+
		"operator: "+fmt.Sprintf("%q", opFile)+"\nsystem_account: "+op.sysPub+"\nresolver: MEMORY\n"+
		"resolver_preload: {\n  "+op.sysPub+": "+op.sysJWT+"\n  "+op.accPub+": "+op.accJWT+"\n}\n"+
		"tls {\n  cert_file: "+fmt.Sprintf("%q", srvCert)+"\n  key_file: "+fmt.Sprintf("%q", srvKey)+
		"\n  ca_file: "+fmt.Sprintf("%q", ca.path("ca.pem"))+"\n  verify: true\n}\n", monitor)

	credsFile := filepath.Join(t.TempDir(), "relay.creds")
	if err := os.WriteFile(credsFile, op.creds, 0o600); err != nil {
		t.Fatal(err)
	}
	relayAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := writeFile(t, "relay.yaml", "relay:\n  listen-addr: "+relayAddr+"\n  admin-listen-addr: "+adminAddr+
		"\n  nats:\n    url: tls://"+natsAddr+"\n    credentials: file:"+credsFile+
		"\n    tls:\n      ca-file: "+ca.path("ca.pem")+"\n      cert-file: "+cliCert+"\n      key-file: "+cliKey+"\n")
	p := startRelayProcess(t, cfg, adminAddr, nil)
	logs := p.log.String()
	if !strings.Contains(logs, `"msg":"relay joined NATS: replicas share work"`) || !strings.Contains(logs, `"store":"nats bucket sluice_relay"`) {
		t.Fatalf("the relay did not join NATS for its queue and store:\n%s", logs)
	}
	if strings.Contains(logs, op.seed) {
		t.Fatal("the relay's log holds its NATS credentials")
	}
	adminKey := regexp.MustCompile(`sk_adm_[0-9A-Za-z]{40}`).FindString(p.stdout.String())
	if adminKey == "" {
		t.Fatalf("no first admin key:\n%s", p.stdout.String())
	}
	// A tunnel made through the admin API lives in the bucket on that server.
	code, out, errb := runCLI(t, map[string]string{"SLUICE_ADMIN_URL": "http://" + adminAddr, "SLUICE_ADMIN_KEY": adminKey},
		"admin", "tunnels", "create", "--name", "over-tls")
	if code != exitOK || tunnelIDRe.FindString(out) == "" {
		t.Fatalf("tunnels create: exit %d\n%s%s", code, out, errb)
	}
}
