// `cryo show`: an image for people (text) and for programs (JSON).
#pragma once

#include <string>

#include "image/image_dir.h"

namespace cryo::image {

std::string ShowText(const LoadedImage& img);
std::string ShowJson(const LoadedImage& img);

}  // namespace cryo::image
