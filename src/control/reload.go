package control

// ReloadResult is the result of MethodReload. The daemon re-reads its
// configuration file and either applies all of it in place (OK) or, when
// an option that needs a restart changed, applies none of it and names
// those options in RestartNeeded: it then runs on exactly the
// configuration it had, until it is restarted. A file that cannot be read
// or is invalid is an error response instead, and changes nothing either.
type ReloadResult struct {
	OK            bool     `json:"ok"`
	RestartNeeded []string `json:"restart_needed,omitempty"`
}
