/**
 * Names read from images (zip entries, GPT partition names, VHDX creator strings) are attacker-chosen text. Before
 * they reach a terminal, control characters (escape sequences, line breaks) are shown as \u escapes. JSON
 * output needs nothing: JSON.stringify escapes them already.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
