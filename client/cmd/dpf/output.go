package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

func printJSON(w io.Writer, v any, err error) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
	if err != nil {
		return exitFailure
	}
	return exitOK
}

func printStatus(w io.Writer, st status) {
	orNone := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	fmt.Fprintf(w, "gateway:          %s\n", orNone(st.Gateway))
	fmt.Fprintf(w, "protocol:         %s\n", orNone(st.Protocol))
	fmt.Fprintf(w, "external address: %s\n", orNone(st.ExternalAddr))
	if len(st.Mappings) == 0 {
		fmt.Fprintln(w, "mappings:         none held by dpf on this host")
		return
	}
	fmt.Fprintln(w, "mappings:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PROTO\tINTERNAL\tEXTERNAL\tEXPIRES IN\tHELD BY")
	for _, m := range st.Mappings {
		left := time.Until(m.Expires).Round(time.Second)
		if left < 0 {
			left = 0
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", m.Proto, m.Internal, m.External, left, m.Command)
	}
	tw.Flush()
}
