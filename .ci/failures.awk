# Prints what each failed test wrote, from a `go test -v` log: the lines
# from its "=== RUN/CONT/NAME" marker on, up to the next marker or the
# package's closing line, at most 120 lines per test. (The "--- FAIL"
# line comes after the test's messages, so the lines after it are not
# the ones to show.)
/^=== (RUN|CONT|NAME) / { cur = $3; next }
/^=== PAUSE / { cur = ""; next }
/^(ok|FAIL|PASS)([ \t]|$)/ { cur = ""; next }
/^ *--- FAIL: / { failed[$3] = 1; order[++n] = $3 }
cur != "" && !/^ *--- / {
	if (count[cur]++ < 120) out[cur] = out[cur] $0 "\n"
	else if (count[cur] == 121) out[cur] = out[cur] "    [... more lines in the log]\n"
}
END {
	for (i = 1; i <= n; i++) {
		name = order[i]
		if (name in shown || out[name] == "") continue
		shown[name] = 1
		printf "=== what %s wrote:\n%s", name, out[name]
	}
}
