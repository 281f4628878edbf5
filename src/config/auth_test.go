package config

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

const (
	testSecretHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	testSecretB64 = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=" // bytes 0x20..0x3f
)

func TestAuthConfig(t *testing.T) {
	in := minimal + "\toption auth 'optional'\n" +
		"config key 'laptop'\n" +
		"\toption secret '" + testSecretHex + "'\n" +
		"\tlist address '198.51.100.20'\n" +
		"\tlist address '2001:db8::/64'\n" +
		"config key\n" +
		"\toption name 'nas.home'\n" +
		"\toption secret '" + testSecretB64 + "'\n" +
		"config rule\n\toption action allow\n\toption auth 'laptop nas.home'\n\toption ext_ports 80\n" +
		"config rule\n\toption action allow\n\tlist auth any\n\toption ext_ports 443\n" +
		"config rule\n\toption action allow\n\toption ext_ports 1024-65535\n"
	c, err := fromString(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth != AuthOptional {
		t.Fatalf("Auth = %q", c.Auth)
	}
	if len(c.Keys) != 2 {
		t.Fatalf("Keys = %v", c.Keys)
	}
	k := c.Keys[0]
	if k.Name != "laptop" || k.Line != 5 || len(k.Secret) != 32 || k.Secret[31] != 0x1f ||
		!reflect.DeepEqual(k.Addresses, []netip.Prefix{netip.MustParsePrefix("198.51.100.20/32"), netip.MustParsePrefix("2001:db8::/64")}) {
		t.Fatalf("first key %+v", k)
	}
	if k := c.Keys[1]; k.Name != "nas.home" || k.Secret[0] != 0x20 || k.Addresses != nil {
		t.Fatalf("second key %+v", k)
	}
	if r := c.Rules[0]; r.AuthAny || !reflect.DeepEqual(r.AuthKeys, []string{"laptop", "nas.home"}) {
		t.Fatalf("rule 1 auth: any %v keys %v", r.AuthAny, r.AuthKeys)
	}
	if r := c.Rules[1]; !r.AuthAny || r.AuthKeys != nil {
		t.Fatalf("rule 2 auth: any %v keys %v", r.AuthAny, r.AuthKeys)
	}
	if r := c.Rules[2]; r.AuthAny || r.AuthKeys != nil {
		t.Fatalf("rule 3 auth: any %v keys %v", r.AuthAny, r.AuthKeys)
	}
	if s := k.String(); strings.Contains(s, testSecretHex) || !strings.Contains(s, "laptop") {
		t.Fatalf("Key.String() = %q", s)
	}

	// Defaults: off, no keys; keys without a mode are allowed (kept for
	// when it is switched on).
	c, err = fromString(t, minimal)
	if err != nil || c.Auth != AuthOff || c.Keys != nil {
		t.Fatalf("minimal: %q %v %v", c.Auth, c.Keys, err)
	}
	if _, err := fromString(t, minimal+"config key 'a'\n\toption secret '"+testSecretHex+"'\n"); err != nil {
		t.Fatal(err)
	}
	if c, err := fromString(t, minimal+"\toption auth required\nconfig key 'a'\n\toption secret '"+testSecretHex+"'\n"); err != nil || c.Auth != AuthRequired {
		t.Fatalf("required: %v %v", c, err)
	}
}

func TestAuthConfigErrors(t *testing.T) {
	const f = "/etc/config/dpf"
	key := func(name, secret string) string {
		return "config key " + name + "\n\toption secret '" + secret + "'\n"
	}
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"bad mode", minimal + "\toption auth on\n", f + `:4: option auth: "on" is not one of off, optional, required`},
		{"required without keys", minimal + "\toption auth required\n", f + `:4: option auth: 'required' without any config key section would refuse every mapping; add a key (dpfd genkey) or use 'optional'`},
		{"short secret", minimal + key("a", testSecretHex[:62]), f + `:5: option secret: unusable authentication key: 31 bytes is too short, at least 32 needed (64 hex digits) (dpfd genkey makes a key)`},
		{"short base64 secret", minimal + key("a", "AAECAwQFBgcICQoLDA0ODw=="), f + `:5: option secret: unusable authentication key: 16 bytes is too short, at least 32 needed (64 hex digits) (dpfd genkey makes a key)`},
		{"odd hex", minimal + key("a", testSecretHex[:63]), f + `:5: option secret: unusable authentication key: odd number of hex digits (dpfd genkey makes a key)`},
		{"not a key", minimal + key("a", "correct horse battery staple"), f + `:5: option secret: unusable authentication key: neither hex nor base64 (dpfd genkey makes a key)`},
		{"no secret", minimal + "config key 'a'\n\tlist address 198.51.100.2\n", f + `:4: option secret: required in every config key section (dpfd genkey makes one)`},
		{"no name", minimal + "config key\n\toption secret '" + testSecretHex + "'\n", f + `:4: option name: a config key section needs a name: write "config key 'NAME'"`},
		{"name any", minimal + "config key 'a'\n\toption name any\n\toption secret '" + testSecretHex + "'\n", f + `:5: option name: "any" cannot name a key (letters, digits and _ . @ -, not "any")`},
		{"name with space", minimal + "config key 'a'\n\toption name 'my key'\n\toption secret '" + testSecretHex + "'\n", f + `:5: option name: "my key" cannot name a key (letters, digits and _ . @ -, not "any")`},
		{"unknown option", minimal + key("a", testSecretHex) + "\toption secrets x\n", f + `:6: option secrets: unknown option in config key section`},
		{"bad address", minimal + key("a", testSecretHex) + "\tlist address lan\n", f + `:6: option address: "lan" is only allowed in int_addr`},
		{"same name", minimal + key("a", testSecretHex) + "config key\n\toption name a\n\toption secret '" + testSecretB64 + "'\n", f + `:6: option name: a key named "a" is already defined at line 4`},
		{"same secret", minimal + key("a", testSecretHex) + key("b", strings.ToUpper(testSecretHex)), f + `:6: option secret: key "b" has the same secret as key "a" (line 4); every client needs its own`},
		{"secret equal up to trailing zeros", minimal + key("a", testSecretHex) + key("b", testSecretHex+"0000"), f + `:6: option secret: key "b" differs from key "a" (line 4) only in trailing zero bytes, which HMAC ignores: they are one key; every client needs its own`},
		{"rule names unknown key", minimal + key("a", testSecretHex) + "config rule\n\toption action allow\n\tlist auth a\n\tlist auth b\n", f + `:9: option auth: no config key section defines a key named "b"`},
		{"rule any and names", minimal + key("a", testSecretHex) + "config rule\n\toption action allow\n\toption auth 'a any'\n", f + `:8: option auth: "any" stands alone: it already means every key`},
		{"rule key twice", minimal + key("a", testSecretHex) + "config rule\n\toption action allow\n\toption auth 'a a'\n", f + `:8: option auth: key "a" is listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fromString(t, tt.in)
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.in)
			}
			if err.Error() != tt.want {
				t.Fatalf("error\n%s\nwant\n%s", err, tt.want)
			}
			// A message never repeats a secret.
			for _, s := range []string{testSecretHex[:62], testSecretB64[:40], "AAECAwQFBgcICQoLDA0ODw"} {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error repeats the secret: %v", err)
				}
			}
		})
	}
}

// TestAuthConfigRoundTrip: a File with key sections survives WriteTo and
// Parse, so that tools editing the file (uci, LuCI) keep keys intact.
func TestAuthConfigRoundTrip(t *testing.T) {
	in := minimal + "\toption auth 'required'\nconfig key 'laptop'\n\toption secret '" + testSecretHex + "'\n\tlist address '198.51.100.20'\n"
	f, err := Parse(strings.NewReader(in), "x")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := f.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	c, err := fromString(t, out.String())
	if err != nil || len(c.Keys) != 1 || c.Keys[0].Name != "laptop" || c.Auth != AuthRequired {
		t.Fatalf("after WriteTo: %+v, %v", c, err)
	}
}

// TestAuthParserNeverRepeatsSecret: the pasting mistakes that put part of a
// key where the parser expects something else give messages with the line
// but without the key's text.
func TestAuthParserNeverRepeatsSecret(t *testing.T) {
	const f = "/etc/config/dpf"
	half1, half2 := testSecretHex[:32], testSecretHex[32:]
	tests := []struct {
		name, in, want string
	}{
		{"secret split by a space", minimal + "config key a\n\toption secret " + half1 + " " + half2 + "\n",
			f + `:5: option secret: unexpected word after value (quote values that contain spaces)`},
		{"secret split over two lines", minimal + "config key a\n\toption secret '" + half1 + "'\n" + half2 + "\n",
			f + `:6: unknown keyword of 32 characters (expected config, option, list or package; a value on a line of its own?)`},
		{"secret on a line of its own", minimal + "config key a\n\toption secret ''\n" + testSecretB64 + "\n",
			f + `:6: unknown keyword of 44 characters (expected config, option, list or package; a value on a line of its own?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in), f)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error\n%v\nwant\n%s", err, tt.want)
			}
			for _, s := range []string{half1, half2, testSecretB64[:20]} {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error repeats the secret: %v", err)
				}
			}
		})
	}
}
