package ipk

import (
	"cmp"
	"regexp"
	"strconv"
	"strings"
)

// Release is the package revision appended to every version, as OpenWrt
// appends PKG_RELEASE ("1.2.3-1").
const Release = "1"

var (
	describeLong = regexp.MustCompile(`^(.+)-([0-9]+)-g([0-9a-f]{4,40})$`)
	describeHash = regexp.MustCompile(`^[0-9a-f]{4,40}$`)
	unsafeChars  = regexp.MustCompile(`[^A-Za-z0-9.+~]+`)
)

// VersionFromDescribe turns the output of "git describe --tags --always
// --dirty" into an opkg version that grows with every commit of a branch:
//
//	v1.2.3                  1.2.3-1
//	v1.2.3-rc1              1.2.3~rc1-1       (~ sorts before 1.2.3)
//	v1.2.3-5-g4a69640       1.2.3+git5.4a69640-1
//	4a69640 (no tag)        0.0.0+git<commits>.4a69640-1
//	v1.2.3-dirty            1.2.3+dirty-1     (after the clean build,
//	...-5-g4a69640-dirty    ...+git5.4a69640.dirty-1   before the next commit)
//
// commits is the number of commits in HEAD ("git rev-list --count HEAD"),
// used only when no tag exists. Anything else ("dev" when git is missing)
// becomes 0.0.0+<sanitised>-1. The result always passes ValidVersion.
func VersionFromDescribe(describe string, commits int) string {
	d := strings.TrimSpace(describe)
	dirty := strings.HasSuffix(d, "-dirty")
	d = strings.TrimSuffix(d, "-dirty")
	var v string
	switch m := describeLong.FindStringSubmatch(d); {
	case m != nil:
		v = cmp.Or(tagVersion(m[1]), "0.0.0") + "+git" + m[2] + "." + m[3]
	case describeHash.MatchString(d):
		v = "0.0.0+git" + strconv.Itoa(max(commits, 0)) + "." + d
	case d != "" && tagVersion(d) != "":
		v = tagVersion(d)
	default:
		s := strings.Trim(unsafeChars.ReplaceAllString(d, "."), ".")
		if s == "" {
			s = "unknown"
		}
		v = "0.0.0+" + s
	}
	if dirty {
		// After the clean build of the same commit, before the next commit.
		if strings.Contains(v, "+") {
			v += ".dirty"
		} else {
			v += "+dirty"
		}
	}
	return v + "-" + Release
}

// tagVersion strips a leading "v" and keeps opkg's characters; a '-' (a
// pre-release such as "-rc1") becomes '~' so it sorts before the release.
// It returns "" when the tag does not start with a digit.
func tagVersion(tag string) string {
	t := strings.TrimPrefix(strings.TrimPrefix(tag, "v"), "V")
	if t == "" || t[0] < '0' || t[0] > '9' {
		return ""
	}
	t = strings.ReplaceAll(t, "-", "~")
	return strings.Trim(unsafeChars.ReplaceAllString(t, "."), ".")
}
