"""duo.audio: the audio front end. Sound in -> speech events and text slices; reply text -> speech.

Modules (import the one you need; heavy libraries load inside them, not here):
- `decode`: wire PCM16 / base64 / float arrays / files -> float32 mono 16 kHz (`PcmStream` for live input).
- `vad`, `slicer`: Silero VAD and the streaming slicer (`Slicer.push` -> `SpeechStarted`, `SpeechStopped`,
  `AudioSlice`).
- `whisper_model`, `asr`, `transcriber`, `batcher`: Whisper loading, batched decoding, per-stream slice ->
  `TextSlice` recognition, and cross-session batching for the server.
- `tts`, `sentences`: speech output (`Speaker`), Piper or espeak-ng, a reply's first clause then sentence by
  sentence.
- `events`, `errors`: the types other parts of duo consume and catch.
"""
