# Doxygen input filter for README.md and the pages of docs/ (docs/Doxyfile.in, FILTER_PATTERNS),
# which also fixes their links for the pages (at the end). It gives every heading below the title
# the id GitHub gives it, so that links to sections, such as the README's
# [many-to-one](docs/sequences-and-attention.md#many-to-one-classifying-padded-sequences), resolve
# in the HTML as they do on GitHub. Doxygen 1.9 names headings autotoc_mdN instead (1.10's
# MARKDOWN_ID_STYLE = GITHUB does what this does). Only the text doxygen reads changes; headings that
# carry an id already, and code fences, are left as they are.
#
# GitHub's rule: lower case, every character but letters, digits, spaces, '-' and '_' dropped,
# spaces turned into '-', and "-1", "-2", ... appended to repeats. (Non-ASCII letters, which GitHub
# keeps, are dropped here: no heading has any.)
/^[ \t]*(```|~~~)/ { fence = !fence; print; next }
!fence && /^##+[ \t]/ && !/\{#[^}]*\}[ \t]*$/ {
    text = $0
    sub(/^#+[ \t]+/, "", text)
    sub(/[ \t]+$/, "", text)
    slug = tolower(text)
    gsub(/[^a-z0-9 _-]/, "", slug)
    gsub(/ /, "-", slug)
    if (slug in seen) {
        n = seen[slug]++
        slug = slug "-" n
    } else {
        seen[slug] = 1
    }
    print $0 " {#" slug "}"
    next
}
# The README links the reference's pages where a checkout has them, under build/docs/html/; in the
# pages themselves (in the build tree, or installed to share/doc/xgrad/html) they lie beside it.
!fence { gsub(/\]\(build\/docs\/html\//, "](") }
# A link to a section of a page, [text](charlm.md#the-checkpoint-format) or ../README.md#api-reference,
# keeps only its anchor: doxygen 1.9 writes a link to another page's anchor as it stands (a file
# that is not in the HTML), while its section labels are global, so [text](#anchor) reaches the
# heading on whichever page holds it, and warns when none does.
!fence { gsub(/\]\([^):#]*\.md#/, "](#") }
{ print }
