"""Cross-cutting helpers with no side of the wall: our error type and exit codes (errors,
exit_codes), making untrusted text inert for the terminal and Markdown (terminal_text,
markdown_escape), and the name -> factory registry plugins extend (registry). Standard library only."""
