// Package config reads dpfd's configuration, an OpenWrt UCI file
// (/etc/config/dpf).
//
// It has two layers. [Parse] reads the UCI syntax, as OpenWrt's libuci does,
// into a [File] of sections and options without knowing what they mean; it
// can also write a File back ([File.WriteTo]). [FromFile] and [Load] turn a
// File into the typed daemon [Config], checking every value, and [Default]
// returns the defaults.
//
// Every error about the file's content is an [*Error] naming the file, the
// line and, where there is one, the option, so that a typo is reported as
// "/etc/config/dpf:7: option max_lifetime: "abc" is not a number of seconds".
//
// The package is pure apart from [Load], which reads one file.
package config
