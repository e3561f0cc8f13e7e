/** Captured stdout/stderr for running the CLI in-process. */
export interface CapturedStream {
  text: string;
  isTTY: boolean;
  write(chunk: string): boolean;
}

function capture(): CapturedStream {
  return {
    text: '',
    isTTY: false,
    write(chunk: string) {
      this.text += chunk;
      return true;
    },
  };
}

export function captureIo(): { stdout: CapturedStream; stderr: CapturedStream } {
  return { stdout: capture(), stderr: capture() };
}
