// tokenfab tokenize --model PATH --text TEXT: prints the token ids of TEXT,
// space-separated, on one line (special tokens in the text are recognised;
// BOS is added if the model adds it by default, as llama.cpp's tokenizer does).
#include <cstdio>

#include "common/strings.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"
#include "worker/model_loader.h"

namespace tokenfab {

int RunTokenize(const std::vector<std::string>& args) {
  std::string model_path, text;
  bool no_bos = false;
  FlagSet flags("tokenize", "Print the token ids of a text, space-separated, on one line.");
  flags.AddString("model", &model_path, "GGUF file or Hugging Face model folder", true);
  flags.AddString("text", &text, "the text to tokenize", true);
  flags.AddBool("no-bos", &no_bos, "never prepend the beginning-of-sequence token");
  if (int rc = ParseFlagsOrExit(flags, "tokenize", args); rc >= 0) return rc;

  auto model = LoadModel(model_path, {.load_weights = false});
  if (!model.ok()) return ReportError("tokenize", model.status());
  const Tokenizer& tok = *(*model)->tokenizer;
  const std::vector<int32_t> ids = tok.Encode(text, !no_bos && tok.add_bos_default());
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) StrAppend(&line, i ? " " : "", ids[i]);
  std::printf("%s\n", line.c_str());
  return 0;
}

}  // namespace tokenfab
