// Package src holds the router side of DPF; see the sub-packages.
package src
