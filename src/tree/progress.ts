/** Progress of a pass over the data: bytes of data hashed so far out of the total. */
export interface Progress {
  bytesDone: number;
  bytesTotal: number;
}

export interface PassOptions {
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
}
