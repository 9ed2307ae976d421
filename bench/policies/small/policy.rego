# Small benchmark policy: a plain allow check over a few input fields.
package bench.small

default allow := false

read_methods := {"GET", "HEAD", "OPTIONS"}

allow if input.user.role == "admin"

allow if {
	input.method in read_methods
	input.user.role in {"viewer", "editor"}
	not input.resource.restricted
}

allow if {
	input.method == "POST"
	input.user.role == "editor"
	input.resource.owner == input.user.name
}
