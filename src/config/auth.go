package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/dpf-router/dpf/src/pcp"
)

// Authenticated requests: option auth of config dpf, config key sections
// and option auth of config rule sections.
//
//	config dpf 'main'
//		option auth 'optional'          # off (default), optional or required
//
//	config key 'laptop'                 # the section name is the key's name
//		option secret '3f2a...'          # 64 hex digits or base64 of 32 bytes
//		list address '198.51.100.20'     # optional: where it may be used from
//
//	config rule
//		option auth 'laptop'             # names of keys, or any
//		...

// SectionKey is the type of the sections holding client keys.
const SectionKey = "key"

// Values of option auth in config dpf (Config.Auth).
const (
	AuthOff      = "off"
	AuthOptional = "optional"
	AuthRequired = "required"
)

// DefaultAuth is the authentication mode when option auth is absent.
const DefaultAuth = AuthOff

// ruleAuthAny is the word of a rule's option auth meaning any key.
const ruleAuthAny = "any"

// keyNameRE is what a key name may be: words that a rule's option auth can
// list (no spaces) and that read well in logs.
var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$`)

// Key is one "config key" section: a client key for authenticated
// requests.
type Key struct {
	// Name is option name, else the section's name; it identifies the
	// key in rules (option auth), in leases and in logs. Unique, not
	// "any".
	Name string
	// Secret is option secret read with pcp.ParseAuthKey: 64 hex digits
	// or the base64 of 32 bytes (up to 64 bytes); unique.
	Secret []byte
	// Addresses is list address: the addresses and CIDR prefixes
	// requests signed with the key may come from; empty means any.
	Addresses []netip.Prefix
	// Line is the line of the section's config statement.
	Line int
}

// isSecretOption reports whether option name holds a secret, whose value
// the parser's messages must not repeat, nor words that may be pieces of it
// (a key split by a space when pasted).
func isSecretOption(name string) bool { return name == "secret" }

// maxQuotedKeyword is the longest unknown keyword the parser repeats in a
// message. The keywords are at most 7 characters long, so a longer word is
// more likely a value on a line of its own, such as a pasted key split over
// two lines, than a misspelt keyword.
const maxQuotedKeyword = 16

// key builds one config key section.
func (b *builder) key(s *Section) (Key, error) {
	k := Key{Name: s.Name, Line: s.Line}
	for i := range s.Options {
		o := &s.Options[i]
		opt := lookupOption(keyOptions, o.Name)
		if opt == nil {
			return Key{}, b.errf(o.Line, o.Name, "unknown option in config %s section", SectionKey)
		}
		if err := opt.set(b, &k, o); err != nil {
			return Key{}, err
		}
	}
	haveSecret := s.Lookup("secret") != nil
	switch {
	case k.Name == "":
		return Key{}, b.errf(s.Line, "name", "a config %s section needs a name: write \"config %s 'NAME'\"", SectionKey, SectionKey)
	case k.Name == ruleAuthAny || !keyNameRE.MatchString(k.Name):
		line := s.Line
		if o := s.Lookup("name"); o != nil {
			line = o.Line
		}
		return Key{}, b.errf(line, "name", "%q cannot name a key (letters, digits and _ . @ -, not \"any\")", k.Name)
	case !haveSecret:
		return Key{}, b.errf(s.Line, "secret", "required in every config %s section (dpfd genkey makes one)", SectionKey)
	}
	return k, nil
}

// secret reads a key in text form; the message never repeats the text.
func (b *builder) secret(o *Option) ([]byte, error) {
	v, err := b.single(o)
	if err != nil {
		return nil, err
	}
	k, err := pcp.ParseAuthKey(v)
	if err != nil {
		return nil, b.errf(o.Line, o.Name, "%s (dpfd genkey makes a key)", strings.TrimPrefix(err.Error(), "pcp: "))
	}
	return k, nil
}

// ruleAuth reads a rule's option auth: "any", or names of keys.
func (b *builder) ruleAuth(o *Option) (anyKey bool, names []string, err error) {
	ws, lines, err := b.words(o)
	if err != nil {
		return false, nil, err
	}
	for i, w := range ws {
		if w == ruleAuthAny {
			if len(ws) > 1 {
				return false, nil, b.errf(lines[i], o.Name, "\"any\" stands alone: it already means every key")
			}
			return true, nil, nil
		}
		if slices.Contains(ws[:i], w) {
			return false, nil, b.errf(lines[i], o.Name, "key %q is listed twice", w)
		}
		names = append(names, w)
	}
	return false, names, nil
}

// checkKeys checks the key sections against each other, against the mode
// and against the rules' option auth, once every section is read.
func (b *builder) checkKeys(f *File, c *Config, main *Section) error {
	for i, k := range c.Keys {
		for _, prev := range c.Keys[:i] {
			if prev.Name == k.Name {
				return b.errf(k.Line, "name", "a key named %q is already defined at line %d", k.Name, prev.Line)
			}
			if pcp.AuthKeyID(prev.Secret) == pcp.AuthKeyID(k.Secret) {
				return b.errf(k.Line, "secret", "key %q has the same secret as key %q (line %d); every client needs its own", k.Name, prev.Name, prev.Line)
			}
			if pcp.AuthKeysEquivalent(prev.Secret, k.Secret) {
				return b.errf(k.Line, "secret", "key %q differs from key %q (line %d) only in trailing zero bytes, which HMAC ignores: they are one key; every client needs its own", k.Name, prev.Name, prev.Line)
			}
		}
	}
	if c.Auth == AuthRequired && len(c.Keys) == 0 {
		line := main.Line
		if o := main.Lookup("auth"); o != nil {
			line = o.Line
		}
		return b.errf(line, "auth", "'required' without any config %s section would refuse every mapping; add a key (dpfd genkey) or use 'optional'", SectionKey)
	}
	for i := range f.Sections {
		s := &f.Sections[i]
		if s.Type != SectionRule {
			continue
		}
		o := s.Lookup("auth")
		if o == nil {
			continue
		}
		ws, lines, _ := b.words(o) // already checked by ruleAuth
		for j, w := range ws {
			if w != ruleAuthAny && !slices.ContainsFunc(c.Keys, func(k Key) bool { return k.Name == w }) {
				return b.errf(lines[j], o.Name, "no config %s section defines a key named %q", SectionKey, w)
			}
		}
	}
	return nil
}

// authMode reads option auth of config dpf.
func (b *builder) authMode(o *Option) (string, error) {
	v, err := b.oneOf(o, AuthOff, AuthOptional, AuthRequired)
	if err != nil {
		return "", err
	}
	return v, nil
}

// String describes the key without its secret, for logs and messages.
func (k Key) String() string {
	return fmt.Sprintf("key %q (line %d)", k.Name, k.Line)
}
