package abi

import "testing"

func TestReader(t *testing.T) {
	b := AppendString(AppendString(nil, "héllo"), "")
	b = append(b, 7, 0, 0, 0, 9)
	r := Reader{B: b}
	if s := r.Str(); s != "héllo" {
		t.Fatalf("Str = %q", s)
	}
	if s := r.Bytes(); len(s) != 0 || r.Err {
		t.Fatalf("empty string: %q %v", s, r.Err)
	}
	if v := r.U32(); v != 7 || r.Err {
		t.Fatalf("U32 = %d %v", v, r.Err)
	}
	if v := r.U32(); v != 0 || !r.Err {
		t.Fatalf("short U32 = %d, err %v", v, r.Err)
	}
	if s := r.Str(); s != "" {
		t.Fatalf("read after an error: %q", s)
	}

	r = Reader{B: []byte{5, 0, 0, 0, 'a', 'b'}}
	if s := r.Bytes(); s != nil || !r.Err {
		t.Fatalf("overlong string: %q %v", s, r.Err)
	}
	r = Reader{B: AppendString([]byte(nil), "ab")}
	s := r.Bytes()
	if cap(s) != 2 {
		t.Fatalf("capacity %d: appending would write past the string", cap(s))
	}
}
