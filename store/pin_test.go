package store

import (
	"errors"
	"strings"
	"testing"
)

func TestHashPINRules(t *testing.T) {
	uid := []byte{0x04, 0x52, 0x7A, 0x91} // hex 04527A91; decimal 72514193 (big-endian), 2440712708 (little-endian)
	for _, tc := range []struct {
		pin string
		ok  bool
	}{
		{"4829", true},
		{"482916", true},
		{"123456789012", true},
		{"123", false},           // too short
		{"1234567890123", false}, // too long
		{"12a4", false},          // not digits
		{"12 34", false},
		{"0452", false},     // prefix of the hex UID
		{"7251", false},     // prefix of the decimal UID
		{"4193", false},     // suffix of the decimal UID
		{"72514193", false}, // the whole decimal UID
		{"2440", false},     // prefix of the little-endian decimal
		{"2708", false},     // suffix of the little-endian decimal
		{"7A91", false},     // not digits anyway
		{"5291", true},      // inside, but neither prefix nor suffix
	} {
		h, err := HashPIN([]byte(tc.pin), uid, fastPIN)
		if tc.ok != (err == nil) {
			t.Errorf("HashPIN(%q): %v, want ok=%v", tc.pin, err, tc.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidPIN) {
				t.Errorf("HashPIN(%q): %v, want ErrInvalidPIN", tc.pin, err)
			}
			if strings.Contains(err.Error(), tc.pin) {
				t.Errorf("HashPIN(%q): the error repeats the PIN: %v", tc.pin, err)
			}
			continue
		}
		if strings.Contains(h, tc.pin) {
			t.Errorf("hash %q contains the PIN in clear", h)
		}
		if ok, err := VerifyPIN(h, []byte(tc.pin)); !ok || err != nil {
			t.Errorf("VerifyPIN(right) = %v, %v", ok, err)
		}
		if ok, err := VerifyPIN(h, []byte(tc.pin+"0")); ok || err != nil {
			t.Errorf("VerifyPIN(wrong) = %v, %v", ok, err)
		}
	}
	// A duress PIN belongs to no card: no UID rule.
	if _, err := HashPIN([]byte("0452"), nil, fastPIN); err != nil {
		t.Errorf("duress PIN: %v", err)
	}
	// A hex UID with a digit run at its end.
	if _, err := HashPIN([]byte("3344"), []byte{0xAA, 0x11, 0x33, 0x44}, fastPIN); !errors.Is(err, ErrInvalidPIN) {
		t.Errorf("suffix of hex UID accepted: %v", err)
	}
}

func TestHashPINSaltAndFormat(t *testing.T) {
	a, err := HashPIN([]byte("4829"), nil, DefaultPINParams)
	mustDo(t, err)
	b, err := HashPIN([]byte("4829"), nil, DefaultPINParams)
	mustDo(t, err)
	if a == b {
		t.Error("two hashes of one PIN are equal: the salt is not random")
	}
	if !strings.HasPrefix(a, "$argon2id$v=19$m=32768,t=2,p=1$") {
		t.Errorf("hash %q: want the PHC form with the default parameters", a)
	}
	h, err := parsePHC(a)
	mustDo(t, err)
	if h.String() != a || len(h.salt) != 16 || len(h.key) != 32 {
		t.Errorf("parse/format round trip: %q -> %+v", a, h)
	}
	if _, err := HashPIN([]byte("4829"), nil, PINParams{Memory: 1 << 30, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("absurd memory accepted: %v", err)
	}
}

func TestParsePHCRejects(t *testing.T) {
	good, err := HashPIN([]byte("4829"), nil, fastPIN)
	mustDo(t, err)
	parts := strings.Split(good, "$")
	for _, bad := range []string{
		"",
		"$argon2i$v=19$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=16$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=064,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$t=1,m=64,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=4,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=999999999,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=0,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=300$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$" + parts[4] + "=$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$" + parts[4] + "$" + parts[5][:10],
		"$argon2id$v=19$m=64,t=1,p=1$$" + parts[5],
		good + "$",
		"x" + good,
	} {
		if _, err := parsePHC(bad); err == nil {
			t.Errorf("parsePHC(%q) accepted", bad)
		}
	}
}

func TestDefaultPINParamsValid(t *testing.T) {
	if err := DefaultPINParams.check(); err != nil {
		t.Fatal(err)
	}
	if DefaultPINParams.Memory < 19*1024 || DefaultPINParams.Time < 1 {
		t.Errorf("DefaultPINParams %+v is below the argon2id memory floor of 19 MiB", DefaultPINParams)
	}
}
