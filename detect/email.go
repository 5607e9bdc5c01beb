package detect

// email tries to take an email address around the '@' at s[at]. It returns
// the end of the address, or 0 when there is none.
func (d *detector) email(s []byte, at int) int {
	ls := at
	for ls > d.lastEnd && props[s[ls-1]]&fLocal != 0 {
		ls--
	}
	if ls == at {
		return 0
	}
	end := domainEnd(s, at+1)
	if end == 0 {
		return 0
	}
	d.found(s, ls, end, Email)
	return end
}

// domainEnd returns the end of the longest domain starting at s[j]: labels of
// [A-Za-z0-9-] separated by single dots, at least two of them, the last of
// which is at least two letters (it may be cut before a dash, as in
// "example.com-"). It returns 0 when there is no such domain.
func domainEnd(s []byte, j int) int {
	n := len(s)
	end := 0
	for labels := 1; ; labels++ {
		a := j
		for j < n && props[s[j]]&fLabel != 0 {
			j++
		}
		if j == a {
			return end
		}
		if labels >= 2 {
			p := a
			for p < j && props[s[p]]&fLetter != 0 {
				p++
			}
			if p-a >= 2 && (p == j || s[p] == '-') {
				end = p
			}
		}
		if j+1 >= n || s[j] != '.' || props[s[j+1]]&fLabel == 0 {
			return end
		}
		j++
	}
}
