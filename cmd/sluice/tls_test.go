package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/enginetest"
)

// writeSelfSigned writes a certificate for 127.0.0.1 and its key as PEM files.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sluice test relay"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "relay.crt"), filepath.Join(dir, "relay.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestRunAgainstTLSRelay: an agent reaches a relay serving TLS with a
// certificate no system root knows when given it as ca-bundle, and does not
// without it (readiness says why).
func TestRunAgainstTLSRelay(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	const runtimeKey = "sk-sluice-rt-tls0123456789"
	relayAddr := freeAddr(t)
	relayCfg := filepath.Join(dir, "relay.yaml")
	yaml := "relay:\n  listen-addr: " + relayAddr + "\n  public-url: https://" + relayAddr +
		"\n  admin-listen-addr: \"\"\n  tls-cert: " + certFile + "\n  tls-key: " + keyFile + "\n  tunnels:\n" +
		"    - id: " + testTunnel + "\n      name: test\n      runtime-key: env:TEST_RUNTIME_KEY\n      auth-mode: public\n"
	if err := os.WriteFile(relayCfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	relayErr := startRelayCLI(t, relayCfg, runtimeKey)

	agentEnv := func(extra map[string]string) envSource {
		m := map[string]string{
			"CONTROL_PLANE_BASE_URL":  "https://" + relayAddr,
			"CONTROL_PLANE_TUNNEL_ID": testTunnel,
			"CONTROL_PLANE_API_KEY":   runtimeKey,
			"HEALTH_LISTEN_ADDR":      "127.0.0.1:0",
		}
		for k, v := range extra {
			m[k] = v
		}
		return envOf(m)
	}
	var untrusted enginetest.SyncBuffer
	startCLI(t, &cli{stdout: &bytes.Buffer{}, stderr: &untrusted, env: agentEnv(nil)}, "run", "--embedded-mcp-stub", "--log.format", "json")
	// The agent compiles its default chain before it first polls.
	enginetest.WaitForWithin(t, "a certificate complaint", devStartTimeout, func() bool { return strings.Contains(untrusted.String(), "certificate") })
	if strings.Contains(untrusted.String(), `"msg":"ready"`) {
		t.Fatal("the agent became ready against an untrusted certificate")
	}

	var trusted enginetest.SyncBuffer
	startCLI(t, &cli{stdout: &bytes.Buffer{}, stderr: &trusted, env: agentEnv(map[string]string{"CA_BUNDLE": certFile})},
		"run", "--embedded-mcp-stub", "--log.format", "json")
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s\nrelay log:\n%s", trusted.String(), relayErr.String())
		}
	}()
	enginetest.WaitForWithin(t, "agent ready over TLS", devStartTimeout, func() bool { return strings.Contains(trusted.String(), `"msg":"ready"`) })
}
