"""A scripted model on 127.0.0.1 for the end-to-end suite: answers the
Anthropic Messages API (SSE), the OpenAI Responses API (SSE), OpenAI Chat
Completions (SSE; OpenCode's openai-compatible provider) and Gemini's
generateContent / streamGenerateContent, the way the real CLIs call them.
Standard library only.

The script, the same for every API, decided from the conversation the CLI
sends (the server keeps no state of its own, so retries are harmless):

1. No call of bgtask's bash tool yet: call it with the scenario's command
   (read from the conversation's first user message: `RUN: <command>`),
   in the background; or, for `SERVE: <command> UNTIL: <regex>`, in the
   background with the readiness condition `ready: {log: <regex>}`.
2. The conversation's last user turn carries a bgtask notification
   (`[bgtask] ... finished` or a `bg-` id with E2E-DONE): answer `NOTIFIED`;
   a readiness notification (`[ready] bg-… is ready`): answer
   `NOTIFIED-READY` with the task id.
3. Otherwise: answer `WAITING` and end the turn.

Every request is appended to the log file as one JSON line
({"api", "path", "body"}), which the suite inspects.
"""

import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG_LOCK = threading.Lock()
NOTICE = re.compile(r"background tasks? finished")
READY_NOTICE = re.compile(r"\[ready\] (bg-[0-9a-f]{16}) is ready")


def bash_args(conversation_texts):
    """The arguments of the bash call the scenario asks for, or None."""
    for text in conversation_texts:
        m = re.search(r"SERVE: (.+?) UNTIL: (.+)", text)
        if m:
            return {"command": m.group(1).strip(), "background": True, "ready": {"log": m.group(2).strip()}}
        m = re.search(r"RUN: (.+)", text)
        if m:
            return {"command": m.group(1).strip(), "background": True}
    return None


def decide(conversation_texts, last_user_text, has_bash_call, tool_names):
    """Returns ("tool", name, args) or ("text", text)."""
    if not has_bash_call:
        args = bash_args(conversation_texts)
        bash = next((n for n in tool_names if "bgtask" in n and n.endswith("bash")), None)
        if args and bash:
            return ("tool", bash, args)
    if NOTICE.search(last_user_text or ""):
        return ("text", "NOTIFIED: " + " ".join(sorted(set(re.findall(r"bg-[0-9a-f]{16}", last_user_text)))))
    ready = READY_NOTICE.findall(last_user_text or "")
    if ready:
        return ("text", "NOTIFIED-READY: " + " ".join(sorted(set(ready))))
    return ("text", "WAITING")


def flatten(value):
    """Every string inside a JSON value, joined."""
    out = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(value)
    return "\n".join(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_path = None

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def record(self, api, body, answer):
        with LOG_LOCK, open(self.log_path, "a") as f:
            f.write(json.dumps({"api": api, "path": self.path, "time": time.time(), "body": body, "answer": answer}) + "\n")

    def send_json(self, value, status=200):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_sse(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def event(self, name, data):
        if name:
            self.wfile.write(f"event: {name}\n".encode())
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.endswith("/models"):
            return self.send_json({"data": [], "models": [], "object": "list"})
        self.send_json({}, 200)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self):
        path = self.path.split("?")[0]
        body = self.body()
        if path.endswith("/messages/count_tokens"):
            return self.send_json({"input_tokens": 100})
        if path.endswith("/messages"):
            return self.anthropic(body)
        if path.endswith("/responses"):
            return self.openai(body)
        if path.endswith("/chat/completions"):
            return self.chat(body)
        if ":countTokens" in path:
            return self.send_json({"totalTokens": 100})
        if ":generateContent" in path or ":streamGenerateContent" in path:
            return self.gemini(body, stream=":streamGenerateContent" in path)
        self.send_json({}, 200)

    # ---- Anthropic Messages -------------------------------------------------
    def anthropic(self, body):
        messages = body.get("messages", [])
        tools = [t.get("name", "") for t in body.get("tools", []) or []]
        has_call = any(
            isinstance(m.get("content"), list)
            and any(c.get("type") == "tool_use" and "bgtask" in c.get("name", "") for c in m["content"])
            for m in messages
        )
        last_user = ""
        for m in reversed(messages):
            if m.get("role") == "user":
                last_user = flatten(m.get("content"))
                break
        texts = [flatten(m.get("content")) for m in messages if m.get("role") == "user"]
        answer = decide(texts, last_user, has_call, tools) if tools else ("text", "ok")
        self.record("anthropic", body, answer)
        msg_id = "msg_" + uuid.uuid4().hex[:20]
        model = body.get("model", "claude")
        usage = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if answer[0] == "tool":
            block = {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": answer[1], "input": answer[2]}
            stop = "tool_use"
        else:
            block = {"type": "text", "text": answer[1]}
            stop = "end_turn"
        if not body.get("stream"):
            return self.send_json({"id": msg_id, "type": "message", "role": "assistant", "model": model,
                                   "content": [block], "stop_reason": stop, "stop_sequence": None, "usage": usage})
        self.start_sse()
        self.event("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage}})
        if block["type"] == "text":
            self.event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            self.event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": block["text"]}})
        else:
            start = dict(block, input={})
            self.event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start})
            self.event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
        self.event("content_block_stop", {"type": "content_block_stop", "index": 0})
        self.event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": 5}})
        self.event("message_stop", {"type": "message_stop"})

    # ---- OpenAI Responses ---------------------------------------------------
    def openai(self, body):
        items = body.get("input", []) or []
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        tools = []
        for t in body.get("tools", []) or []:
            tools.append(t.get("name") or (t.get("function") or {}).get("name") or "")
            for sub in t.get("tools", []) or []:  # namespaced tools
                tools.append(f"{t.get('name', '')}__{sub.get('name', '')}" if sub.get("name") else "")
        has_call = any(i.get("type") == "function_call" and "bgtask" in (i.get("name", "") + i.get("namespace", "")) for i in items)
        last_user = ""
        for i in reversed(items):
            if i.get("role") == "user":
                last_user = flatten(i.get("content"))
                break
        texts = [flatten(i.get("content")) for i in items if i.get("role") == "user"]
        answer = decide(texts, last_user, has_call, tools) if tools else ("text", "ok")
        self.record("openai", body, answer)
        resp_id = "resp_" + uuid.uuid4().hex[:20]
        if answer[0] == "tool":
            name = answer[1]
            item = {"type": "function_call", "id": "fc_" + uuid.uuid4().hex[:12], "call_id": "call_" + uuid.uuid4().hex[:12],
                    "name": name, "arguments": json.dumps(answer[2]), "status": "completed"}
            ns = self.namespace_of(body, name)
            if ns:
                item["namespace"], item["name"] = ns
        else:
            item = {"type": "message", "id": "msg_" + uuid.uuid4().hex[:12], "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": answer[1], "annotations": []}]}
        usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
        response = {"id": resp_id, "object": "response", "created_at": int(time.time()), "status": "completed",
                    "model": body.get("model", "gpt"), "output": [item], "usage": usage}
        if not body.get("stream"):
            return self.send_json(response)
        self.start_sse()
        self.event("response.created", {"type": "response.created", "response": dict(response, status="in_progress", output=[])})
        self.event("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item})
        if item["type"] == "message":
            self.event("response.output_text.delta", {"type": "response.output_text.delta", "output_index": 0,
                                                      "item_id": item["id"], "content_index": 0, "delta": answer[1]})
        self.event("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item})
        self.event("response.completed", {"type": "response.completed", "response": response})

    @staticmethod
    def namespace_of(body, name):
        for t in body.get("tools", []) or []:
            for sub in t.get("tools", []) or []:
                if f"{t.get('name', '')}__{sub.get('name', '')}" == name:
                    return (t.get("name"), sub.get("name"))
        return None

    # ---- OpenAI Chat Completions (OpenCode's openai-compatible provider) ----
    def chat(self, body):
        messages = body.get("messages", []) or []
        tools = [(t.get("function") or {}).get("name", "") for t in body.get("tools", []) or []]
        has_call = any("bgtask" in (c.get("function") or {}).get("name", "")
                       for m in messages for c in m.get("tool_calls", []) or [])
        last_user = ""
        for m in reversed(messages):
            if m.get("role") in ("user", "tool"):
                last_user = flatten(m.get("content"))
                break
        texts = [flatten(m.get("content")) for m in messages if m.get("role") == "user"]
        answer = decide(texts, last_user, has_call, tools) if tools else ("text", "ok")
        self.record("chat", body, answer)
        if answer[0] == "tool":
            delta = {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_" + uuid.uuid4().hex[:12], "type": "function",
                                                           "function": {"name": answer[1], "arguments": json.dumps(answer[2])}}]}
            finish = "tool_calls"
        else:
            delta = {"role": "assistant", "content": answer[1]}
            finish = "stop"
        chunk = {"id": "chatcmpl-" + uuid.uuid4().hex[:12], "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": body.get("model", "m"), "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        if not body.get("stream"):
            message = dict(delta)
            return self.send_json({"id": chunk["id"], "object": "chat.completion", "created": chunk["created"],
                                   "model": chunk["model"], "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                                   "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
        self.start_sse()
        self.event(None, chunk)
        self.event(None, dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": finish}],
                              usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    # ---- Gemini -------------------------------------------------------------
    def gemini(self, body, stream):
        contents = body.get("contents", []) or []
        decls = []
        for t in body.get("tools", []) or []:
            decls += [d.get("name", "") for d in t.get("functionDeclarations", []) or []]
        has_call = any(
            "functionCall" in p and "bash" in p["functionCall"].get("name", "")
            for c in contents for p in c.get("parts", []) or []
        )
        last_user = ""
        for c in reversed(contents):
            if c.get("role") == "user":
                last_user = flatten(c.get("parts"))
                break
        texts = [flatten(c.get("parts")) for c in contents if c.get("role") == "user"]
        if decls:
            answer = decide(texts, last_user, has_call, [d if "bgtask" in d else d for d in decls])
            if answer[0] == "text" and not has_call:
                # Gemini names MCP tools without the server when unambiguous.
                bash = next((d for d in decls if d.endswith("bash") and d != "run_shell_command"), None)
                args = bash_args(texts)
                if bash and args:
                    answer = ("tool", bash, args)
        else:
            # A side call (routing, summaries): a small JSON answer fits all.
            answer = ("text", json.dumps({"reasoning": "scripted", "model_choice": "flash",
                                          "complexity_reasoning": "scripted", "complexity_score": 1}))
        self.record("gemini", body, answer)
        if answer[0] == "tool":
            part = {"functionCall": {"name": answer[1], "args": answer[2]}}
        else:
            part = {"text": answer[1]}
        chunk = {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
                 "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
                 "modelVersion": "gemini-scripted"}
        if not stream:
            return self.send_json(chunk)
        self.start_sse()
        self.event(None, chunk)


def main():
    log_path = sys.argv[1]
    port_file = sys.argv[2]
    Handler.log_path = log_path
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os

    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
