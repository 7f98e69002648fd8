package tests

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"im2000/lib/wire"
	"im2000/lib/wire/wiretest"
)

type interopPDU struct {
	Proto string `json:"proto"`
	Name  string `json:"name"`
	Hex   string `json:"hex"`
}

// TestPyasn1Interop checks the Go codec against an independent pyasn1
// transcription of the profile (tests/interop), both ways: pyasn1 decodes
// every Go sample and re-encodes the very same bytes; PDUs pyasn1 builds
// from Python values are byte for byte what Go encodes for the same values,
// and Go decodes them. im2000's extension (msoap.Resend) is refused by
// pyasn1's transcription of the profile, as another implementation would
// refuse it.
func TestPyasn1Interop(t *testing.T) {
	python := "/usr/bin/python3" // Debian's, with python3-pyasn1 (tests/deps.sh)
	if err := exec.Command(python, "-c", "import pyasn1").Run(); err != nil {
		t.Fatalf("%s with pyasn1 is needed (apt-get install python3-pyasn1): %v", python, err)
	}
	samples := wiretest.Samples()
	goSide := map[string]wiretest.Sample{}
	var out []interopPDU
	for _, s := range samples {
		out = append(out, interopPDU{s.Proto.Name, s.Name, hex.EncodeToString(s.Bytes())})
		goSide[s.Proto.Name+" "+s.Name] = s
	}
	dir := t.TempDir()
	in, res := filepath.Join(dir, "go.json"), filepath.Join(dir, "py.json")
	b, _ := json.Marshal(out)
	os.WriteFile(in, b, 0o644)
	cmd := exec.Command(python, "interop/check.py", in, res)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("check.py: %v\n%s", err, msg)
	}
	var result struct {
		Checked []string     `json:"checked"`
		Errors  []string     `json:"errors"`
		Python  []interopPDU `json:"python"`
	}
	b, _ = os.ReadFile(res)
	if err := json.Unmarshal(b, &result); err != nil {
		t.Fatal(err)
	}
	extensions, refused := 0, map[string]bool{}
	for _, s := range samples {
		if s.Extension {
			extensions++
		}
	}
	for _, e := range result.Errors {
		what, _, _ := strings.Cut(e, ": ")
		if s, ok := goSide[what]; ok && s.Extension {
			refused[what] = true
			continue
		}
		t.Error(e)
	}
	if extensions == 0 || len(refused) != extensions {
		t.Errorf("pyasn1 refused %d of the %d samples of im2000's extension", len(refused), extensions)
	}
	if len(result.Checked) != len(samples)-extensions {
		t.Errorf("pyasn1 accepted %d of %d Go PDUs of the profile", len(result.Checked), len(samples)-extensions)
	}
	if len(result.Python) < 10 {
		t.Errorf("only %d PDUs came from the Python side", len(result.Python))
	}
	protos := map[string]bool{}
	for _, p := range result.Python {
		s, ok := goSide[p.Proto+" "+p.Name]
		if !ok {
			t.Errorf("Python sample %s %s has no Go counterpart", p.Proto, p.Name)
			continue
		}
		pyBytes, _ := hex.DecodeString(p.Hex)
		if !bytes.Equal(pyBytes, s.Bytes()) {
			t.Errorf("%s %s: pyasn1 and Go encode the same value differently:\n py %x\n go %x", p.Proto, p.Name, pyBytes, s.Bytes())
		}
		pdu, err := s.Proto.Unmarshal(pyBytes)
		if err != nil {
			t.Errorf("%s %s: Go does not decode pyasn1's PDU: %v", p.Proto, p.Name, err)
			continue
		}
		var again []byte
		if pdu.Command != nil {
			again = wire.MarshalCommand(pdu.Command)
		} else {
			again = wire.MarshalResponse(pdu.ForceAbort, pdu.Status, pdu.Response)
		}
		if !bytes.Equal(again, pyBytes) {
			t.Errorf("%s %s: Go re-encodes pyasn1's PDU differently", p.Proto, p.Name)
		}
		protos[p.Proto] = true
	}
	if len(protos) != 4 {
		t.Errorf("Python built PDUs of %d protocols, want all 4", len(protos))
	}
	t.Logf("pyasn1 checked %d Go PDUs; Go checked %d pyasn1 PDUs", len(result.Checked), len(result.Python))
}

// TestPyasn1Conformance runs a client written with pyasn1 alone against
// the running im2000-submitd and im2000-retrieved.
func TestPyasn1Conformance(t *testing.T) {
	h := newStoreHost(t, "tcpserver", nil)
	cmd := exec.Command("/usr/bin/python3", "interop/conformance.py", h.msoap, h.msrap, h.store)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("conformance.py: %v\n%s", err, out)
	}
}
